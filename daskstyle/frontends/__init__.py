"""What users touch: the ``daskstyle`` command (:mod:`~daskstyle.frontends.cli`),
terminal handling, progress bars rendered from a run's events, the benchmarks of
``daskstyle bench`` (and its simulated GPU cluster), the TOML pipelines
(:mod:`~daskstyle.frontends.pipeline`) and the page of ``daskstyle view``
(:mod:`~daskstyle.frontends.view`). The top
layer: it may import everything below it, and nothing imports it.
"""
