"""Training and importing featurizers: pretrained backbones, fine-tuning, export to a featurizer directory."""
