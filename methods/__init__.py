"""Methods: each family registers its builders in reidbench.registry.METHODS from a torch-free
``<family>_config`` module (knobs, defaults, ``"module:function"`` references to the builders)."""

from reidbench.methods import (  # noqa: F401
    clip_baselines_config,
    demo_config,
    early_fusion_config,
    graft_config,
    late_fusion_config,
    mmet_config,
    top_reid_config,
)
