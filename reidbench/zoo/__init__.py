"""Trained models that outlive their run: saved weights, evaluation-only runs, and the model zoo."""
