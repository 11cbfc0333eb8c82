"""Methods: each module registers its builders in reidbench.registry.METHODS."""

from methods import late_fusion  # noqa: F401
