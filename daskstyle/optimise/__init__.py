"""Optimisation and its state: chunked Adam (:mod:`~daskstyle.optimise.adam`), a
level's zarr state on disk (canvas, moments, content target, the overview the viewer reads),
state held in memory between checkpoints, and the loop of one level's steps. It may import :mod:`daskstyle.engine` and the
layers below it.
"""
