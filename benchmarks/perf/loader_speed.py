"""Loader benchmark: training batches per second delivered by reidbench's pipeline vs a conventional loader.

Both feed the same synthetic RGBNT100-layout files (768x128 RGB|NIR|TIR strips, tiles used at 128x256) in
the same batches of P x K = 16 x 4 samples, decoded, augmented (flip, pad 10 + random crop, random
erasing), normalised and batched:

* reidbench: DataModule.train_batches (decoded once into the memory-mapped uint8 cache, one augmentation
  draw per sample for all modalities, numpy slice-copy executor, normalisation straight into the batch);
* the same pipeline with kornia's AugmentationSequential in place of the hand-written augmentation
  (modalities stacked along channels, so one draw per sample covers all of them);
* baseline: a torch DataLoader (num_workers=2) whose Dataset opens each JPEG with PIL per item, crops the
  three tiles and applies per-sample torchvision transforms (the TransReID recipe), then default collation.

Rounds alternate between the loaders; the medians are compared. The cache build (cold) is timed
separately: it happens once per (dataset, split, size), not per run or epoch.

    python benchmarks/perf/loader_speed.py            # ~3.4k samples generated once under $REIDBENCH_CACHE
    python benchmarks/perf/loader_speed.py --ids 4 --cameras 2 --per-camera 1 --p 4 --k 2 --steps 1 --rounds 1
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from reidbench.data.builtin import ALL, scan_strips  # noqa: E402
from reidbench.data.cache import cache_dir  # noqa: E402
from reidbench.data.module import DataModule  # noqa: E402
from reidbench.data.names import VEHICLE_STRIP  # noqa: E402
from reidbench.data.synthetic import SyntheticConfig, generate  # noqa: E402
from reidbench.data.types import Dataset  # noqa: E402
from reidbench.protocol import build_protocol  # noqa: E402

# ---- baseline: the conventional per-item loader ----------------------------------------------------


class PerItemDataset(torch.utils.data.Dataset):
    """Opens the strip with PIL on every access and transforms each modality tile on its own."""

    def __init__(self, dataset: Dataset, size: tuple[int, int], pad: int) -> None:
        import torchvision.transforms as T

        self.samples = dataset.splits.train
        self.transform = T.Compose(
            [
                T.Resize(size),
                T.RandomHorizontalFlip(0.5),
                T.Pad(pad),
                T.RandomCrop(size),
                T.ToTensor(),
                T.Normalize([0.5] * 3, [0.5] * 3),
                T.RandomErasing(p=0.5, scale=(0.02, 0.4), ratio=(0.3, 3.3), value=0),
            ]
        )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | int]:
        sample = self.samples[i]
        with Image.open(sample.images["rgb"].path) as img:
            img = img.convert("RGB")
            tile = img.width // 3
            out: dict[str, torch.Tensor | int] = {
                m: self.transform(img.crop((j * tile, 0, (j + 1) * tile, img.height)))
                for j, m in enumerate(ALL)
            }
        out["pid"] = sample.pid
        return out


class PKBatches(torch.utils.data.Sampler):
    """The DataModule's own PK batches (rank 0 of 1), epoch after epoch, as a batch sampler."""

    def __init__(self, data: DataModule) -> None:
        self.data = data

    def __iter__(self):
        epoch = 0
        while True:
            for idx in self.data.epoch_indices(epoch):
                yield idx.tolist()
            epoch += 1


# ---- reidbench, hand-written or kornia augmentation ------------------------------------------------


def pipeline_batches(data: DataModule):
    epoch = 0
    while True:
        yield from data.train_batches(epoch)
        epoch += 1


def kornia_batches(data: DataModule):
    import kornia.augmentation as K

    pad = data.protocol.data.augment.pad
    aug = K.AugmentationSequential(
        K.RandomHorizontalFlip(p=0.5),
        K.RandomCrop(data.size, padding=pad),
        K.RandomErasing(p=0.5, scale=(0.02, 0.4), ratio=(0.3, 3.3), value=0.0),
    )
    epoch = 0
    while True:
        for idx in data.epoch_indices(epoch):
            index = torch.from_numpy(idx)
            x = torch.cat([data.normalise(data.train.images[m][index], m) for m in data.modalities], dim=1)
            x = aug(x)  # (B, 3M, H, W): one draw per sample for all modalities
            yield {m: x[:, 3 * j : 3 * j + 3] for j, m in enumerate(data.modalities)} | {"pid": index}
        epoch += 1


def timed(batches, steps: int, warmup: int, sync=lambda: None) -> float:
    """Samples per second over ``steps`` batches after ``warmup`` batches."""
    for _ in range(warmup):
        next(batches)
    sync()
    start = time.perf_counter()
    n = 0
    for _ in range(steps):
        n += len(next(batches)["pid"])
    sync()
    return n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ids", type=int, default=50, help="training identities")
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--per-camera", type=int, default=8, help="images per identity and camera")
    parser.add_argument("--steps", type=int, default=30, help="batches timed per round and loader")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2, help="batches skipped before timing")
    parser.add_argument("--p", type=int, default=16, help="identities per batch")
    parser.add_argument("--k", type=int, default=4, help="samples per identity in a batch")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the baseline")
    parser.add_argument("--device", default="cpu", help="device of the reidbench pipeline (cpu, cuda)")
    parser.add_argument("--data", type=Path, default=None, help="where the generated files are kept")
    args = parser.parse_args(argv)

    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    config = SyntheticConfig(
        train_ids=args.ids,
        test_ids=2,
        cameras=args.cameras,
        per_camera=args.per_camera,
        query_per_camera=1,
        height=128,
        width=256,
    )
    start = time.perf_counter()
    root = generate(args.data or cache_dir() / "bench-loader", config)
    dataset = scan_strips("loader-bench", root, ALL, VEHICLE_STRIP)
    strip = Image.open(dataset.splits.train[0].images["rgb"].path).size
    print(
        f"data: {len(dataset.splits.train)} training samples, {strip[0]}x{strip[1]} JPEG strips, "
        f"{len(os.sched_getaffinity(0))} CPU core(s) (ready in {time.perf_counter() - start:.1f} s)"
    )

    # 128x256, flip 0.5, pad 10 + crop, erase 0.5, mean/std 0.5 (RGBNT100's protocol); PK 16x4 by default
    protocol = build_protocol("rgbnt100", [f"sampler.p={args.p}", f"sampler.k={args.k}"])
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    decoded = Path(tempfile.mkdtemp(prefix="reidbench-bench-cache-"))
    os.environ["REIDBENCH_CACHE"] = str(decoded)  # a cold decoded cache, timed on its own
    try:
        start = time.perf_counter()
        data = DataModule(dataset, protocol, device, seed=0, show_progress=False)
        build_s = time.perf_counter() - start
        n_all = len(dataset.splits.train) + len(dataset.splits.query) + len(dataset.splits.gallery)
        print(
            f"cache build (once per dataset, split and size): {build_s:.1f} s for {n_all} samples "
            f"({n_all / build_s:.0f} samples/s); on device: {data.on_device}"
        )
        batch = len(data.epoch_indices(0)[0])
        loader = torch.utils.data.DataLoader(
            PerItemDataset(dataset, data.size, protocol.data.augment.pad),
            batch_sampler=PKBatches(data),
            num_workers=args.workers,
        )
        results: dict[str, list[float]] = {"reidbench": [], "reidbench+kornia": [], "baseline": []}
        for _ in range(args.rounds):
            results["reidbench"].append(timed(pipeline_batches(data), args.steps, args.warmup, sync))
            results["reidbench+kornia"].append(timed(kornia_batches(data), args.steps, args.warmup, sync))
            batches = iter(loader)  # workers start here and stop when the iterator goes
            results["baseline"].append(timed(batches, args.steps, args.warmup))
            del batches
    finally:
        shutil.rmtree(decoded, ignore_errors=True)

    med = {name: statistics.median(v) for name, v in results.items()}
    print(
        f"batch {batch} samples x 3 modalities at {data.size[0]}x{data.size[1]}, {args.steps} batches x "
        f"{args.rounds} rounds, medians:"
    )
    for name, value in med.items():
        extra = f" (num_workers={args.workers}, PIL + torchvision per item)" if name == "baseline" else ""
        print(f"  {name:18s} {value:8.0f} samples/s  {3 * value:8.0f} images/s{extra}")
    ratio = med["reidbench"] / med["baseline"]
    print(
        f"reidbench / baseline: {ratio:.1f}x   "
        f"(kornia variant: {med['reidbench+kornia'] / med['baseline']:.1f}x; "
        f"hand-written / kornia: {med['reidbench'] / med['reidbench+kornia']:.1f}x)"
    )
    return {**med, "ratio": ratio, "cache_build_s": build_s}


if __name__ == "__main__":
    main()
