"""Methods: each module registers its builders in reidbench.registry.METHODS."""

from methods import early_fusion, graft, late_fusion, mmet  # noqa: F401
