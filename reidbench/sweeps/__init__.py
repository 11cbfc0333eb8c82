"""Many runs: grids and ablations, Optuna tuning, the executors that place runs (in process, a local GPU
pool, Slurm), their worker process and the liveness of running runs."""
