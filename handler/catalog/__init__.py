"""The catalog: each workspace's log of create-only commits, the state it makes, checkpoints, and storage keys."""
