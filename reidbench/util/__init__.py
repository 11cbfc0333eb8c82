"""Plumbing with no domain in it: progress bars, the creation lock of embedded SQLite stores, where the
shipped YAML lives."""
