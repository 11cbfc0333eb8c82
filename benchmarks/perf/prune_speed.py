"""Benchmark: inference throughput of a pruned ViT backbone against the unpruned one, in the same run.

    python benchmarks/perf/prune_speed.py                       # ViT-S/16 at 256x128, batch 16, 2 threads
    python benchmarks/perf/prune_speed.py --fraction 0.5 --device cuda

Three copies of the same randomly initialised backbone: unpruned; ``unstructured-l1`` (global L1 masks
over the attention and MLP matrices, ``--fraction`` of them zeroed: the matrices stay dense); and
``structured`` (``--fraction`` of the heads and MLP channels physically removed). Prints parameters,
non-zero prunable weights, counted GFLOPs per image and images/s (median of ``--repeats`` timed forward
passes after a warm-up), and each pruned model's throughput as a ratio to the unpruned one. Timings are
printed, never asserted. Run from the repository root.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

from _synthetic import cpu_name  # noqa: E402

from reidbench.evaluation.cost import (  # noqa: E402
    count_nonzero,  # noqa: E402
    count_params,
    inference_throughput,
)
from reidbench.nn.backbones import build_image_backbone  # noqa: E402
from reidbench.protocol import BackboneCfg  # noqa: E402
from reidbench.prune.structured import prune_structured  # noqa: E402
from reidbench.prune.unstructured import prunable_weights, prune_l1_unstructured  # noqa: E402


def gflops(model: torch.nn.Module, x: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / len(x) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="vit_small_patch16_224")
    parser.add_argument("--size", default="256x128", help="H x W")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--fraction", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    h, w = (int(v) for v in args.size.split("x"))
    device = torch.device(args.device)
    base = build_image_backbone(BackboneCfg(name=args.backbone, pretrained=False, drop_path=0.0), (h, w))
    masked, shrunk = copy.deepcopy(base), copy.deepcopy(base)
    prune_l1_unstructured(masked, args.fraction)
    prune_structured(shrunk, args.fraction)
    x = torch.randn(args.batch, 3, h, w, device=device)
    where = f"{device.type} ({cpu_name() if device.type == 'cpu' else torch.cuda.get_device_name()})"
    print(f"{args.backbone} at {h}x{w}, batch {args.batch}, {args.threads} threads, {where}")
    rows = []
    for name, model in (("unpruned", base), ("unstructured-l1", masked), ("structured", shrunk)):
        model = model.to(device).eval()
        rows.append(
            (
                name,
                count_params(model) / 1e6,
                count_nonzero(prunable_weights(model)) / 1e6,
                gflops(model, x[:1]),
                inference_throughput(model, x, args.batch, args.repeats),
            )
        )
    print(f"{'model':<16} {'params M':>9} {'non-zero M':>11} {'GFLOPs':>7} {'img/s':>8} {'vs unpruned':>12}")
    for name, params, nonzero, flops, speed in rows:
        ratio = speed / rows[0][4]
        print(f"{name:<16} {params:>9.2f} {nonzero:>11.2f} {flops:>7.2f} {speed:>8.1f} {ratio:>11.2f}x")


if __name__ == "__main__":
    main()
