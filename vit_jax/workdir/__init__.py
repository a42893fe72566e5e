"""A run directory's files: their names, the lock, orbax checkpoints,
metrics, and reading a run back."""
