"""``reidbench zoo get``: a zoo model's folder fetched from its source (the Hugging Face Hub, a URL, a local
folder), its weights checked against the sha256 and config hash of the zoo entry, cached under
``$REIDBENCH_CACHE/zoo/<name>/<sha256 prefix>/``. Nothing unverified enters the cache."""

from __future__ import annotations

import os
import re
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from reidbench.data.cache import cache_dir
from reidbench.errors import UserError
from reidbench.train.weights import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    check_config,
    read_config,
    read_weights,
    sha256_file,
)
from reidbench.zoo.catalog import ZooEntry

FILES = (WEIGHTS_FILE, CONFIG_FILE)  # what a source folder must hold
HF_PREFIX = "hf-hub:"
TIMEOUT_S = 30


def cached_folder(entry: ZooEntry) -> Path:
    """Where ``entry`` is cached."""
    return cache_dir() / "zoo" / re.sub(r"[^A-Za-z0-9_.@-]", "_", entry.name) / entry.sha256[:16]


def fetch(entry: ZooEntry, zoo_dir: Path) -> Path:
    """The verified, cached folder of ``entry`` (``zoo_dir``: where relative local sources start)."""
    dest = cached_folder(entry)
    if (dest / WEIGHTS_FILE).is_file() and sha256_file(dest / WEIGHTS_FILE) == entry.sha256:
        return dest
    part = dest.with_name(f"{dest.name}.part-{os.getpid()}")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    try:
        origin = _download(entry.source, Path(zoo_dir), part)
        verify(entry, part, origin)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(part, dest)
    finally:
        shutil.rmtree(part, ignore_errors=True)
    return dest


def verify(entry: ZooEntry, folder: Path, origin: str) -> None:
    """A UserError when ``folder``'s weights are not the entry's: sha256 (naming the file ``origin``),
    method or config hash, or a config.yaml describing another config."""
    got = sha256_file(folder / WEIGHTS_FILE)
    if got != entry.sha256:
        raise UserError(
            f"checksum mismatch for {origin}: sha256 {got}, the zoo entry {entry.name!r} expects "
            f"{entry.sha256}; the file is damaged or was replaced (fetch it again, or re-export the zoo)"
        )
    weights = read_weights(folder / WEIGHTS_FILE)
    if weights.method != entry.method or weights.config_hash != entry.config_hash:
        raise UserError(
            f"{origin}: weights of method {weights.method!r} with config {weights.config_hash}, but the zoo "
            f"entry {entry.name!r} is method {entry.method!r} with config {entry.config_hash}: the weights "
            "belong to a different method or config"
        )
    check_config(weights, read_config(folder / CONFIG_FILE), f"{origin.rsplit('/', 1)[0]}/{CONFIG_FILE}")


def _download(source: str, zoo_dir: Path, dst: Path) -> str:
    """Copy the source folder's files into ``dst``; the weights file's location (for messages)."""
    if source.startswith(HF_PREFIX):
        return _from_hub(source.removeprefix(HF_PREFIX), dst)
    if re.match(r"^https?://", source):
        return _from_url(source.rstrip("/"), dst)
    folder = Path(source.removeprefix("file://")).expanduser()
    folder = folder if folder.is_absolute() else zoo_dir / folder
    for name in FILES:
        if not (folder / name).is_file():
            raise UserError(f"zoo source {folder}: no {name} there; export the zoo again or fix the source")
        shutil.copyfile(folder / name, dst / name)
    return str(folder / WEIGHTS_FILE)


def _from_url(base: str, dst: Path) -> str:
    for name in FILES:
        url = f"{base}/{name}"
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(dst / name, "wb") as out:
                shutil.copyfileobj(response, out)
        except urllib.error.HTTPError as exc:
            raise UserError(
                f"{url}: the server answered {exc.code} {exc.reason}; is the zoo source right?"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UserError(
                f"cannot download {url}: no network or the host is unreachable ({reason}); connect, or "
                "fetch the folder yourself and point the zoo entry's source at it"
            ) from None
    return f"{base}/{WEIGHTS_FILE}"


def _from_hub(spec: str, dst: Path) -> str:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo, _, revision = spec.partition("@")  # local-miss errors first: they subclass EntryNotFoundError
    for name in FILES:
        where = f"{HF_PREFIX}{spec} ({name})"
        try:
            path = hf_hub_download(repo, name, revision=revision or None)
        except (LocalEntryNotFoundError, OfflineModeIsEnabled) as exc:
            raise UserError(
                f"cannot download {where}: no network (or HF_HUB_OFFLINE is set) and it is not in the "
                f"Hugging Face cache ({type(exc).__name__}); connect and run `reidbench zoo get` again"
            ) from None
        except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as exc:
            raise UserError(
                f"{where}: not on the Hugging Face Hub ({type(exc).__name__}); is the id right?"
            ) from None
        except (HfHubHTTPError, OSError) as exc:
            raise UserError(f"cannot download {where}: {exc}") from None
        shutil.copyfile(path, dst / name)
    return f"{HF_PREFIX}{spec}/{WEIGHTS_FILE}"
