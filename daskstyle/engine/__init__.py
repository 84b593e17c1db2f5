"""The exact tiled loss: torch kernels that run on one padded tile (features, partial
Grams, the gradient with the global Gram errors held; region guides and their guided Grams),
the windows tile tasks read, and the Dask graphs of the Gram pass and the gradient pass
built from a tile plan and those kernels. It may import
:mod:`daskstyle.compute` and the layers below it.
"""
