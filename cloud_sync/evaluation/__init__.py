"""Retrieval quality of a featurizer and index: metrics, baselines, calibration and reports."""
