"""local_search component: the faiss index on the device, metadata and telemetry."""
