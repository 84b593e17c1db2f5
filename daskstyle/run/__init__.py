"""A whole run: its plan (inputs, weights, levels, record) and execution level by level
(:mod:`~daskstyle.run.painting`), the events it reports, the run directory and what
daskstyle owns in it, disk footprints, the auto tile and precision, a run's regions, and the lines that
describe a plan. It may import :mod:`daskstyle.api`, :mod:`daskstyle.settings` and every
layer below them.
"""
