"""ftlab: Hydra + Lightning experiments for full vs partial fine-tuning of transformers."""

__version__ = "0.1.0"
