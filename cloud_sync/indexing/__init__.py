"""Catalogs in, index bundles out: reading catalogs, featurizing them, writing the bundle."""
