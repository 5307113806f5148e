"""Errors a user is expected to see: one line naming the file and the reason, no traceback."""


class VisualSearchError(Exception):
    """An expected failure caused by input (a file, a setting), not by a bug."""


class ImageError(VisualSearchError):
    """An image that is missing, unreadable or not an image."""


class ModelError(VisualSearchError):
    """A featurizer directory that is incomplete or inconsistent."""


class CatalogError(VisualSearchError):
    """A catalog that cannot be read, or rows that cannot be used."""


class BundleError(VisualSearchError):
    """An index bundle that is incomplete, corrupted or made for another model."""


class MessageError(VisualSearchError):
    """A message that does not parse or does not follow its schema."""
