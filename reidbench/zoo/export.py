"""``reidbench zoo export``: an experiment's finished training runs -> one folder per (method, dataset,
recipe) with the weights, config, model card and checksums (ready for ``huggingface_hub.upload_folder``),
and the zoo entries describing them.

Runs are tidied as the report tidies them (the latest run of a seed wins, ablation points and runs on
partial data are left out, configs that differ in more than the seed are separate variants). A folder ships
the weights of the group's lowest seed; its card gives the metrics over all the group's seeds.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from reidbench import tracking
from reidbench.errors import UserError
from reidbench.report.collect import tidy_runs
from reidbench.report.formatting import Cell
from reidbench.train.weights import ARTIFACT_DIR, CONFIG_FILE, WEIGHTS_FILE, read_config, sha256_file
from reidbench.zoo.card import CARD_FILE, model_card, write_checksums
from reidbench.zoo.catalog import ZooEntry, zoo_name
from reidbench.zoo.evaluate import DEFAULT_RECIPE

RANK_METRICS = ("rank1", "rank5", "rank10", "mAP", "mINP")


@dataclass
class ExportResult:
    """The entries written and the groups left out (with why)."""

    entries: list[ZooEntry] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def export_zoo(uri: str, experiment: str, out: Path, source_base: Path | None = None) -> ExportResult:
    """Export every (method, dataset, recipe[, variant]) of ``experiment`` under ``out``; entry sources are
    the folders' paths relative to ``source_base`` (the zoo file's folder) when given, else absolute."""
    frame = tracking.finished_runs(uri, experiment)
    runset = tidy_runs(frame)
    runs = runset.runs[(runset.runs["ablation"] == "") & ~runset.runs["partial"]]
    if runs.empty:
        raise UserError(f"experiment {experiment!r} in {uri} has no finished training runs to export")
    tags = {
        str(r["run_id"]): {k[5:]: v for k, v in r.items() if k.startswith("tags.")}
        for _, r in frame.iterrows()
    }
    result = ExportResult()
    for (method, dataset, recipe, variant), group in runs.groupby(["method", "dataset", "recipe", "variant"]):
        group = group.sort_values("seed")
        run_id = str(group["run_id"].iloc[0])
        run_tags = {k: str(v) for k, v in tags[run_id].items() if isinstance(v, str)}
        recipe = recipe or DEFAULT_RECIPE
        parts = [recipe] if recipe != DEFAULT_RECIPE else []
        if variant:
            parts.append("c" + run_tags.get("config_hash", run_id)[:6])
        name = zoo_name(method, dataset, ".".join(parts))
        folder = out / name
        if not _copy_artifacts(uri, run_id, run_tags, folder):
            result.skipped.append(
                f"{name}: run {run_id} saved no weights "
                "(trained with --no-save-weights or before runs saved them)"
            )
            continue
        metrics = {
            m: _summary(group[m].to_numpy())
            for m in runset.metrics
            if m.split("@", 1)[0] in RANK_METRICS and group[m].notna().any()
        }
        shipped = {
            m: float(group[m].iloc[0])
            for m in runset.metrics
            if m in group and math.isfinite(group[m].iloc[0])
        }
        sha = sha256_file(folder / WEIGHTS_FILE)
        entry = ZooEntry(
            name=name,
            method=method,
            dataset=dataset,
            recipe=recipe,
            config_hash=run_tags.get("config_hash", ""),
            sha256=sha,
            source=str(_relative(folder, source_base)),
            metrics=metrics,
            params=_first(group, "params"),
            gflops=_first(group, "gflops"),
            seeds=[int(s) for s in group["seed"]],
            run_id=run_id,
        )
        config = read_config(folder / CONFIG_FILE)
        (folder / CARD_FILE).write_text(model_card(entry, config, run_tags, shipped))
        write_checksums(
            folder,
            {
                f.name: sha256_file(f)
                for f in (folder / WEIGHTS_FILE, folder / CONFIG_FILE, folder / CARD_FILE)
            },
        )
        result.entries.append(entry)
    return result


def _copy_artifacts(uri: str, run_id: str, tags: dict[str, str], folder: Path) -> bool:
    """The run's weights and config copied into ``folder`` (checked against its sha256 tag); False when the
    run saved none."""
    from reidbench.zoo.evaluate import download_dir

    run_id = tracking.origin_run(uri, run_id).run_id  # a reused point's copy: the artifacts are its origin's
    with download_dir() as tmp:
        weights = tracking.download_artifact(uri, run_id, f"{ARTIFACT_DIR}/{WEIGHTS_FILE}", Path(tmp))
        config = tracking.download_artifact(uri, run_id, f"{ARTIFACT_DIR}/{CONFIG_FILE}", Path(tmp))
        if weights is None or config is None:
            return False
        if tags.get("weights_sha256") and sha256_file(weights) != tags["weights_sha256"]:
            raise UserError(
                f"checksum mismatch: {ARTIFACT_DIR}/{WEIGHTS_FILE} of run {run_id} does not have the sha256 "
                "the run recorded; the artifact store was altered"
            )
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        shutil.copyfile(weights, folder / WEIGHTS_FILE)
        shutil.copyfile(config, folder / CONFIG_FILE)
    return True


def _summary(values) -> dict[str, float | None]:
    cell = Cell.of(values)
    return {"mean": cell.mean, "std": cell.std if cell.has_std else None, "n": cell.n}


def _first(group, column: str) -> float | None:
    if column not in group or not math.isfinite(group[column].iloc[0]):
        return None
    return float(group[column].iloc[0])


def _relative(folder: Path, base: Path | None) -> Path:
    if base is None:
        return folder.resolve()
    import os

    return Path(os.path.relpath(folder.resolve(), Path(base).resolve()))
