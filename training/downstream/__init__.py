"""Downstream evaluation: frozen-feature kNN and linear probe, fine-tuning, the evaluate command, plots."""
