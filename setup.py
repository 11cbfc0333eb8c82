"""The packages of the wheel: reidbench/ as found, plus the checkout's methods/ and benchmarks/ mapped
inside it, so the repository keeps the design card's layout and ``reidbench`` is the only top-level
import name once installed. Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

MAPPED = {"reidbench.methods": "methods", "reidbench.benchmarks": "benchmarks"}

setup(
    packages=find_packages(include=["reidbench", "reidbench.*"]) + list(MAPPED),
    package_dir=MAPPED,
)
