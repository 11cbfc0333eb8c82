"""The model card (README.md, Hugging Face front matter) and checksum file of an exported zoo folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reidbench.report.formatting import format_cell
from reidbench.zoo.catalog import ZooEntry

CARD_FILE = "README.md"
CHECKSUMS_FILE = "SHA256SUMS"
LICENCE = "mit"  # the reidbench licence (pyproject.toml)


def model_card(
    entry: ZooEntry, config: dict[str, Any], run_tags: dict[str, str], shipped: dict[str, float]
) -> str:
    """The card of ``entry``: what was trained how, metrics mean ± std over seeds next to the shipped
    checkpoint's own, cost, provenance (commit, run, config hash), how to use it, licence."""
    protocol = config["protocol"]
    data, train = protocol["data"], protocol["train"]
    seed = config.get("seed")
    settings = sorted({k.split("@", 1)[1] for k in entry.metrics if "@" in k})
    lines = [
        "---",
        f"license: {LICENCE}",
        "library_name: reidbench",
        "tags: [re-identification, multimodal, reidbench, " + f"{entry.method}, {entry.dataset}]",
        "---",
        "",
        f"# {entry.name}",
        "",
        f"`{entry.method}` trained on `{entry.dataset}` with reidbench, recipe `{entry.recipe}`: the weights "
        f"at the last epoch ({_epochs(train)} epochs, no test-set selection) of seed {seed}.",
        "",
        f"| metric | mean ± std over {len(entry.seeds)} seed(s) ({', '.join(map(str, entry.seeds))}) "
        f"| this checkpoint (seed {seed}) |",
        "|---|---|---|",
    ]
    names = {"rank1": "R1", "rank5": "R5", "rank10": "R10", "mAP": "mAP", "mINP": "mINP"}
    for metric, label in names.items():
        if metric in entry.metrics:
            lines.append(f"| {label} | {format_cell(entry.cell(metric))} | {_pct(shipped.get(metric))} |")
    for setting in settings:
        key = f"mAP@{setting}"
        lines.append(f"| {key} | {format_cell(entry.cell(key))} | {_pct(shipped.get(key))} |")
    lines += [
        "",
        "Metrics in %, on the dataset's test query / gallery under its protocol's evaluation rule "
        f"(junk rule `{protocol['eval']['junk']}`).",
        "",
        "| | |",
        "|---|---|",
        f"| parameters | {_fmt(entry.params, 1e6, 'M')} |",
        f"| inference GFLOPs per sample | {_fmt(entry.gflops, 1, '')} |",
        f"| modalities | {', '.join(data['modalities'])} |",
        f"| input size (H x W) | {data['image_size'][0]} x {data['image_size'][1]} |",
        f"| backbone | {protocol['backbone']['name']} |",
        f"| protocol | benchmarks/protocols/{config['dataset']}.yaml, resolved in config.yaml |",
        f"| config hash | {entry.config_hash} |",
        f"| git commit | {run_tags.get('git_commit', 'unknown')} |",
        f"| training run | {entry.run_id} |",
        f"| weights sha256 | {entry.sha256} |",
        "",
        "## Use",
        "",
        "```",
        f"reidbench zoo get {entry.name}",
        f"reidbench eval --zoo {entry.name} --dataset {entry.dataset} --set eval.rerank=true",
        f"reidbench eval --weights model.safetensors --dataset {entry.dataset}   # this folder's file",
        "```",
        "",
        "The weights file carries its config in its header; loading is strict except for the ID classifier, "
        "which is dropped on a dataset with another number of training identities.",
        "",
        "## Licence",
        "",
        f"Weights and code: {LICENCE.upper()} (the reidbench licence). The terms of the training dataset "
        f"(`{entry.dataset}`) apply to any use of these weights.",
        "",
    ]
    return "\n".join(lines)


def write_checksums(folder: Path, sha256: dict[str, str]) -> Path:
    """``SHA256SUMS`` in ``sha256sum`` format (``sha256sum -c SHA256SUMS`` checks the folder)."""
    path = folder / CHECKSUMS_FILE
    path.write_text("".join(f"{digest}  {name}\n" for name, digest in sorted(sha256.items())))
    return path


def _epochs(train: dict[str, Any]) -> int:
    from reidbench.config import from_dict
    from reidbench.protocol import Protocol, TrainCfg

    cfg = from_dict(TrainCfg, train, "train")
    return sum(s.epochs for s in Protocol(dataset="", train=cfg).resolved_stages())


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _fmt(value: float | None, scale: float, unit: str) -> str:
    return "–" if value is None else f"{value / scale:.3g}{unit}"
