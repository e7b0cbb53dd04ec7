"""Data for training: the LightningDataModule every task shares, and resumable, exact samplers."""
