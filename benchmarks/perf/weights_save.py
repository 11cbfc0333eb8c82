"""What saving a finished run's weights costs: per demo method, the safetensors size and the time of
``log_run_weights`` (write, sha256, copy into a SQLite MLflow store's artifacts, tags), against the run's
final evaluation (``evaluate`` on the synthetic test split), which every run already does, measured in
the same process. The models are the demo's tiny configs at initialisation (same shapes as trained).

    python benchmarks/perf/weights_save.py [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from reidbench import tracking
from reidbench.data.module import DataModule
from reidbench.evaluation import evaluate
from reidbench.nn.factory import BuildInfo, create_method, create_tokenizer
from reidbench.registry import DATASETS, load_plugins
from reidbench.spec import make_spec, method_config
from reidbench.train.weights import log_run_weights

METHODS = ["late_fusion", "graft", "early_fusion", "single_modality", "mmet"]


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(method: str, dataset, uri: str, experiment: str, repeats: int) -> tuple[int, float, float]:
    """(weights bytes, save seconds, final-evaluation seconds) of ``method``'s demo model."""
    device = torch.device("cpu")
    spec = make_spec(method, "synthetic", 0)
    cfg = method_config(method, spec.protocol.method)
    tokenizer = create_tokenizer(method, cfg, spec.protocol, dataset.info)
    data = DataModule(dataset, spec.protocol, device, show_progress=False, tokenizer=tokenizer)
    info = BuildInfo.from_protocol(spec.protocol, dataset.info, data.num_classes, tokenizer)
    model = create_method(method, cfg, info)
    run = tracking.Run(uri, experiment, spec.name, {"run_kind": "bench"})
    saved = []
    save_s = timed(lambda: saved.append(log_run_weights(run, model, spec.config())), repeats)
    query, gallery = data.eval_set("query"), data.eval_set("gallery")
    eval_s = timed(lambda: evaluate(model, query, gallery, spec.protocol.eval), repeats)
    return saved[-1].nbytes, save_s, eval_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_plugins()
    dataset = DATASETS.get("synthetic").builder(Path("unused"))
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        experiment = tracking.prepare(uri, "bench")
        print(f"{args.threads} thread(s), median of {args.repeats}")
        print(f"{'method':16s} {'weights':>10s} {'save':>9s} {'final eval':>11s} {'save / eval':>12s}")
        for method in METHODS:
            nbytes, save_s, eval_s = measure(method, dataset, uri, experiment, args.repeats)
            size = f"{nbytes / 2**20:.2f} MiB"
            ratio = save_s / eval_s
            print(f"{method:16s} {size:>10s} {save_s * 1e3:7.1f} ms {eval_s * 1e3:8.1f} ms {ratio:11.2f}x")


if __name__ == "__main__":
    main()
