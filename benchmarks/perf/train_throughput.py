"""Training throughput of every registered method, against the same model in plain fp32 eager mode.

For each method the same randomly initialised model (and the same PK batch of random images, captions
for MMET) is trained for a few steps (forward, loss, backward, AdamW step) in several modes:

* ``fp32 eager math``: fp32, eager, attention through the unfused math kernel (the plain baseline);
* ``fp32 eager sdpa``: fp32, eager, PyTorch's fused SDPA attention kernels;
* ``bf16 eager sdpa``: bf16 autocast + SDPA;
* ``bf16 compiled sdpa``: the same under ``torch.compile`` (with ``--compile``).

It prints images/s (samples x modalities), the speed-up over the baseline measured in the same run, the
parameter count, inference GFLOPs per sample and training GFLOPs per step (``torch.utils.flop_counter``),
and the model FLOPs utilisation (MFU: achieved training FLOP/s over the device peak of the mode's dtype;
known peaks for H100/H200/A100, else ``--peak-tflops``).

    python benchmarks/perf/train_throughput.py                                   # tiny, CPU
    python benchmarks/perf/train_throughput.py --device cuda --size paper --compile
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from reidbench.data.types import DatasetInfo  # noqa: E402
from reidbench.evaluation.cost import count_params, forward_gflops, train_step_flops  # noqa: E402
from reidbench.nn.factory import BuildInfo, create_loss_terms, create_method, create_tokenizer  # noqa: E402
from reidbench.registry import METHODS, load_plugins  # noqa: E402
from reidbench.spec import make_spec  # noqa: E402
from reidbench.train.losses import Criterion  # noqa: E402

# Dense peak TFLOP/s by device-name substring: (bf16 tensor cores, fp32 without TF32).
PEAKS = {"H200": (989.0, 67.0), "H100": (989.0, 67.0), "A100": (312.0, 19.5)}
WORDS = (
    "an object with a red green blue yellow upper lower part and horizontal vertical rising falling "
    "stripes dense wide hot spot at the left middle right"
).split()
SIZES = {
    # tiny: the synthetic protocol's ViT (patch 8, dim 64, depth 2, heads 2) at 32x64, P8 x K4
    "tiny": (
        "synthetic",
        ["sampler.p=8", "sampler.k=4"],
        {
            "graft": ["method.heads=2", "method.dim_feedforward=128"],
            "early_fusion": ["method.heads=2", "method.dim_feedforward=128"],
            "mmet": [
                "method.text_hidden=64",
                "method.text_layers=2",
                "method.text_heads=2",
                "method.mm_layers=1",
                "method.mm_heads=2",
            ],
        },
    ),
    # paper: ViT-B/16 at 128x256 (RGBNT100 protocol), PK 16 x 4; GraFT on DeiT-B/16 distilled as in its code
    "paper": (
        "rgbnt100",
        ["sampler.p=16", "sampler.k=4"],
        {
            "graft": ["backbone.name=deit_base_distilled_patch16_224"],
            "early_fusion": [],
            "mmet": [],
        },
    ),
}


@dataclass
class Mode:
    name: str
    bf16: bool
    sdpa: bool
    compiled: bool


def modes(compile_too: bool) -> list[Mode]:
    out = [
        Mode("fp32 eager math", False, False, False),
        Mode("fp32 eager sdpa", False, True, False),
        Mode("bf16 eager sdpa", True, True, False),
    ]
    return out + ([Mode("bf16 compiled sdpa", True, True, True)] if compile_too else [])


def write_vocab(path: Path, size: int) -> Path:
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *WORDS]
    tokens += [f"filler{i}" for i in range(size - len(tokens))]
    path.write_text("\n".join(tokens) + "\n")
    return path


def make_batch(spec, device: torch.device, tokenizer=None) -> dict:
    """A PK batch of random images (and captions, tokenized with ``tokenizer``) in the protocol's shape."""
    p = spec.protocol
    gen = torch.Generator().manual_seed(0)
    n = p.sampler.p * p.sampler.k
    h, w = p.data.image_size
    batch = {m: torch.randn(n, 3, h, w, generator=gen).to(device) for m in p.data.modalities}
    batch["pid"] = torch.arange(p.sampler.p).repeat_interleave(p.sampler.k).to(device)
    if tokenizer is not None:
        captions = [" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(18)) + "." for i in range(n)]
        batch.update(tokenizer.encode(captions, device).batch(torch.arange(n, device=device), np.arange(n)))
    return batch


def build(method: str, size: str, device: torch.device, vocab: Path, pk: list[int] | None = None):
    dataset, common, extra = SIZES[size]
    overrides = [*common, "backbone.pretrained=false", *extra.get(method, [])]
    if pk:
        overrides += [f"sampler.p={pk[0]}", f"sampler.k={pk[1]}"]
    if method == "mmet":
        overrides += [f"method.tokenizer={vocab}", "method.text_pretrained=false"]
    spec = make_spec(method, dataset, 0, overrides)
    p = spec.protocol
    num_classes = 50
    info = DatasetInfo(dataset, list(p.data.modalities), num_classes, has_text=True)
    tokenizer = create_tokenizer(method, p.method, p, info)
    model = create_method(method, p.method, BuildInfo.from_protocol(p, info, num_classes, tokenizer)).to(
        device
    )
    batch = make_batch(spec, device, tokenizer)
    terms = create_loss_terms(method, p.method, p.loss)
    criterion = Criterion(p.loss, num_classes, model.embed_dim, terms).to(device)
    stage = p.resolved_stages()[-1]  # the last stage trains everything (GraFT: backbone unfrozen)
    return spec, model, criterion, batch, stage


@contextlib.contextmanager
def attention(sdpa: bool):
    """SDPA kernels as PyTorch picks them, or only the unfused math kernel."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if sdpa:
        yield
    else:
        with sdpa_kernel(SDPBackend.MATH):
            yield


def make_step(model, criterion, batch, stage, mode: Mode, device: torch.device):
    """One training step (forward, loss, backward, AdamW) of ``model`` in ``mode``."""
    params = [p for p in [*model.parameters(), *criterion.parameters()] if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    forward = torch.compile(model) if mode.compiled else model

    def step() -> None:
        with attention(mode.sdpa), torch.autocast(device.type, dtype=torch.bfloat16, enabled=mode.bf16):
            out = forward(batch)
            loss = criterion(out, batch["pid"], stage.loss, stage.label_smoothing)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def time_modes(
    model,
    criterion,
    batch,
    stage,
    mode_list: list[Mode],
    device: torch.device,
    steps: int,
    warmup: int,
    repeats: int,
) -> list[float]:
    """Seconds per training step of each mode: the best of ``repeats`` rounds of ``steps`` steps, the modes
    interleaved within every round (so load from other processes hits them alike)."""
    runs = [make_step(model, criterion, batch, stage, mode, device) for mode in mode_list]
    for step in runs:
        for _ in range(warmup):
            step()
    best = [float("inf")] * len(runs)
    for _ in range(repeats):
        for i, step in enumerate(runs):
            sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                step()
            sync(device)
            best[i] = min(best[i], (time.perf_counter() - start) / steps)
    return best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_method(
    name: str,
    args: argparse.Namespace,
    device: torch.device,
    vocab: Path,
    steps: int,
    warmup: int,
    peak_bf16: float | None,
    peak_fp32: float | None,
) -> list[list[str]]:
    """Table rows of one method: one per mode, the first (fp32 eager math) being the baseline."""
    torch.manual_seed(0)
    spec, model, criterion, batch, stage = build(name, args.size, device, vocab, args.pk)
    mode_list, repeats = modes(args.compile), args.repeats
    images = len(batch["pid"]) * len(spec.protocol.data.modalities)
    gflops = forward_gflops(model, batch)
    model.train()
    step_flops = train_step_flops(
        lambda: criterion(model(batch), batch["pid"], stage.loss, stage.label_smoothing)["loss"]
    )
    model.zero_grad(set_to_none=True)
    rows = []
    times = time_modes(model, criterion, batch, stage, mode_list, device, steps, warmup, repeats)
    for mode, seconds in zip(mode_list, times, strict=True):
        peak = peak_bf16 if mode.bf16 else peak_fp32
        mfu = f"{100 * step_flops / seconds / (peak * 1e12):.1f}%" if peak else "-"
        rows.append(
            [
                name,
                mode.name,
                f"{count_params(model) / 1e6:.2f}",
                f"{gflops:.3f}",
                f"{step_flops / 1e9:.1f}",
                f"{images / seconds:.{0 if images / seconds >= 100 else 1}f}",
                f"{times[0] / seconds:.2f}x",
                mfu,
            ]
        )
        print("  " + " | ".join(rows[-1]), flush=True)
    return rows


def peak_tflops(device: torch.device, override: float | None) -> tuple[float | None, float | None]:
    if override:
        return override, override
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peaks in PEAKS.items():
            if key in name:
                return peaks
    return None, None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", choices=list(SIZES), default="tiny")
    parser.add_argument("--methods", nargs="*", default=None, help="default: every registered method")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 5 on CPU, 20 on GPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2 / 5)")
    parser.add_argument(
        "--pk",
        type=int,
        nargs=2,
        default=None,
        metavar=("P", "K"),
        help="identities x instances per batch (default: 8 4 tiny, 16 4 paper)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per mode; the best is kept")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (bf16)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="device peak for MFU (else known GPUs)"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = device.type == "cuda"
    steps = args.steps if args.steps is not None else (20 if gpu else 5)
    warmup = args.warmup if args.warmup is not None else (5 if gpu else 2)
    load_plugins()
    names = args.methods or METHODS.names()
    peak_bf16, peak_fp32 = peak_tflops(device, args.peak_tflops)
    where = torch.cuda.get_device_name(device) if gpu else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"train throughput, size={args.size}, {where}, torch {torch.__version__}: best of {args.repeats} x "
        f"{steps} timed steps after {warmup} (modes interleaved)"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        vocab = write_vocab(Path(tmp) / "vocab.txt", 30522 if args.size == "paper" else 40)
        for name in names:
            rows += bench_method(name, args, device, vocab, steps, warmup, peak_bf16, peak_fp32)
            if gpu:
                torch.cuda.empty_cache()
    header = [
        "method",
        "mode",
        "params (M)",
        "GFLOPs/sample",
        "train GFLOPs/step",
        "img/s",
        "vs fp32 math",
        "MFU",
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print()
    for row in [header, ["-" * w for w in widths], *rows]:
        print(
            "  ".join(
                str(c).rjust(w) if i > 1 else str(c).ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )


if __name__ == "__main__":
    main()
