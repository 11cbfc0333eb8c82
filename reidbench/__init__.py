"""reidbench: a benchmark and ablation suite for multimodal object re-identification."""

__version__ = "0.1.0"
