"""Launching sweeps beyond one process: submitit jobs (SLURM, or local processes), multi-host notes."""
