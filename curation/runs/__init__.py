"""Training runs: launch (local, torchrun, Slurm), follow, import run directories, compare (and pick K)."""
