"""What users touch: the ``daskstyle`` command (:mod:`~daskstyle.frontends.cli`),
terminal handling, progress bars rendered from a run's events, the benchmarks of
``daskstyle bench`` and the TOML pipelines (:mod:`~daskstyle.frontends.pipeline`). The top
layer: it may import everything below it, and nothing imports it.
"""
