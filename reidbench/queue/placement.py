"""Which devices a job gets: the free ones with the most free memory, read from NVML when it is there.

A machine is a list of units: GPUs (ids as CUDA_VISIBLE_DEVICES names them) or, without GPUs, CPU slots.
A job needs ``units`` of them (its ``--gpus-per-run``). A GPU counts as usable when no queue job holds it
and, when NVML can read it, it has at least ``min_free_mb`` free and is below ``max_util`` percent busy
(someone else's process may be on it).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DeviceStat", "choose", "read_gpus"]


@dataclass(frozen=True)
class DeviceStat:
    """One unit's state for the GPU panel; memory in MiB, utilisation in percent (None: not known)."""

    id: str
    name: str
    total_mb: float | None = None
    used_mb: float | None = None
    util: float | None = None

    @property
    def free_mb(self) -> float | None:
        return None if self.total_mb is None or self.used_mb is None else self.total_mb - self.used_mb


def read_gpus(ids: list[str]) -> dict[str, DeviceStat] | None:
    """NVML's memory and utilisation of devices ``ids``; None when NVML (nvidia-ml-py) or a driver is
    missing."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no library, no driver: placement by count only
        return None
    stats = {}
    try:
        for i in ids:
            try:
                handle = pynvml.nvmlDeviceGetHandleByIndex(int(i))
                mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
                util = pynvml.nvmlDeviceGetUtilizationRates(handle)
                name = pynvml.nvmlDeviceGetName(handle)
                name = name.decode() if isinstance(name, bytes) else str(name)
                stats[i] = DeviceStat(i, name, mem.total / 2**20, mem.used / 2**20, float(util.gpu))
            except Exception:
                stats[i] = DeviceStat(i, f"GPU {i} (unreadable)")
    finally:
        pynvml.nvmlShutdown()
    return stats


def choose(
    units: list[str],
    held: set[str],
    need: int,
    stats: dict[str, DeviceStat] | None = None,
    min_free_mb: float = 0.0,
    max_util: float = 100.0,
) -> list[str] | None:
    """``need`` of ``units`` not in ``held`` (most free memory first), or None when too few are usable."""
    usable = []
    for unit in units:
        if unit in held:
            continue
        stat = (stats or {}).get(unit)
        if stat is not None and stat.free_mb is not None:
            if stat.free_mb < min_free_mb or (stat.util is not None and stat.util > max_util):
                continue
        usable.append(unit)
    if len(usable) < need:
        return None

    def free(unit: str) -> float:
        stat = (stats or {}).get(unit)
        return -(stat.free_mb or 0.0) if stat is not None and stat.free_mb is not None else 0.0

    ranked = sorted(usable, key=lambda u: (free(u), units.index(u)))
    return sorted(ranked[:need], key=units.index)
