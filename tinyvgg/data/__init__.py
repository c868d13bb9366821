"""Images in, batches out: ``tinyvgg.data.transforms``."""
