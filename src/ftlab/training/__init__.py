"""One training job's machinery: the LightningModule, optimizer, callbacks, checkpoints, resumption, processes."""
