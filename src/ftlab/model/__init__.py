"""The pretrained model: loading checkpoints and tokenizers, its anatomy (embeddings, blocks, head), local files."""
