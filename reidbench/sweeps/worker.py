"""Subprocess entry point of the local pool: ``python -m reidbench.sweeps.worker JOB_DIR``.

Runs the job pickled in ``JOB_DIR/job.pkl``. A job with several processes is started as that many ranks
(torchrun-style environment); under torchrun
(``torchrun --nproc-per-node N -m reidbench.sweeps.worker JOB_DIR``)
the ranks are already there. Rank 0 writes ``result.json``; a failing rank writes ``error-<rank>.json``.
The launcher part imports nothing heavy; only the ranks import torch.
"""

from __future__ import annotations

import sys
from pathlib import Path

from reidbench.parallel import launch
from reidbench.sweeps import jobs


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m reidbench.sweeps.worker JOB_DIR", file=sys.stderr)
        return 2
    job_dir = Path(args[0])
    job = jobs.read_job(job_dir)
    launch.exit_on_sigterm()  # SIGTERM -> SystemExit: the launcher stops its ranks, a rank marks its run
    env = launch.env_from_os()
    if job.nprocs > 1 and env is None:
        return launch.launch([sys.executable, "-m", "reidbench.sweeps.worker", str(job_dir)], job.nprocs)
    rank = env.rank if env is not None else 0
    try:
        from reidbench.sweeps.executors import run_job

        result = run_job(job)
    except BaseException as exc:
        jobs.write_error(job_dir, rank, exc)
        raise
    if rank == 0:
        jobs.write_result(job_dir, result.metrics, result.run_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
