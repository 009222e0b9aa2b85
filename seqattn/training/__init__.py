"""Training: the label-smoothed loss, learning-rate schedules, checkpoints and the training loop."""
