"""Training for contrastive-zoo: one generic Lightning recipe for any method row, datamodules, export."""
