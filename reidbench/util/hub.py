"""Hugging Face hub access that fails fast with a useful message instead of retrying for minutes.

Downloads go through ``huggingface_hub`` (timm and transformers both use it). When the hub cannot be
reached (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` set, or a 3 s TCP probe of the endpoint or the
HTTPS proxy fails) the load runs in offline mode, i.e. from the local cache only; a cache miss or any
download error becomes a :class:`UserError` that tells the user which local-path setting to use.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

from reidbench.errors import UserError

PROBE_TIMEOUT_S = 3.0


@functools.lru_cache(maxsize=8)
def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def hub_reachable() -> bool:
    """Whether a TCP connection to the hub endpoint (or the HTTPS proxy, when one is set) opens."""
    from huggingface_hub import constants

    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlparse(proxy or constants.ENDPOINT)
    if not url.hostname:
        return False
    return _reachable(url.hostname, url.port or (443 if url.scheme == "https" else 80))


@contextmanager
def hub_download(what: str, local_hint: str) -> Iterator[None]:
    """Run a hub load of ``what``: offline (cache only) when the hub is unreachable, errors -> UserError.

    ``local_hint`` names the setting that loads from a local path instead (e.g. ``backbone.weights=PATH``).
    """
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError

    previous = constants.HF_HUB_OFFLINE
    offline = previous or not hub_reachable()
    constants.HF_HUB_OFFLINE = offline
    try:
        yield
    except (OSError, HfHubHTTPError, ValueError) as exc:
        why = (
            "the Hugging Face hub is unreachable (offline mode or no network) and the weights are not in "
            "the local cache"
            if offline
            else f"the download failed ({type(exc).__name__}: {exc})"
        )
        raise UserError(
            f"cannot load pretrained {what}: {why}. Download it on a machine with network "
            f"access and pass {local_hint} (a local file or Hugging Face directory), or "
            f"train from scratch with the pretrained setting off."
        ) from None
    finally:
        constants.HF_HUB_OFFLINE = previous
