"""The shipped YAML: protocols/, ablations/ and suites/ (perf/ holds the performance benchmarks, scripts
that are not installed). Installed as the package ``reidbench.benchmarks`` (see setup.py), where
:func:`reidbench.util.resources.shipped_dir` finds it in a checkout and in a wheel alike."""
