"""Pruning the image backbones: GraFT's global L1 unstructured study and structured head / channel removal."""
