"""One run on several processes: the torchrun-style launcher and the DDP helpers."""
