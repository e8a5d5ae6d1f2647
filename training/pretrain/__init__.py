"""Pre-training: the Lightning module, datamodules, resumable data order and checkpoints, callbacks, hardware choice."""
