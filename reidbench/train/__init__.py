"""One run's training: the engine (stages, AMP, DDP, resume), its typed state, losses and checkpoints."""
