"""Training: optimizers, the compiled group program, the epoch loop, checkpoints, workdirs, sweeps."""
