"""Training: tracking (runs, params, metrics, artifacts), trainers, checkpoints and packaging."""
