"""featurizer component: camera frames to L2-normalised feature vectors."""
