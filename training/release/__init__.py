"""Release: export checkpoints, publish to hubs or the package, import legacy checkpoints, ship and record weights."""
