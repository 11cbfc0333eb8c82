"""A durable job queue for runs, ablations and tuning studies, and the scheduler that places them on GPUs.

``store`` keeps the jobs (SQLite in WAL mode), ``submit`` checks a command line the way the command itself
would before anything is stored, ``placement`` picks devices, ``scheduler`` starts, watches, adopts and
cancels job processes, ``progress`` reads a job's MLflow runs, ``cli`` holds ``reidbench queue`` / ``serve``.
"""
