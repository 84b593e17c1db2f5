"""The foundation: the error hierarchy whose messages say what to do next, message text
(one line, counted, readable sizes), the tile geometry (layer lists to receptive field and
halo, image and tile sizes to tile plans) and where the package's own files lie. Pure Python
and NumPy: no torch, no Dask, no pictures. It imports nothing of daskstyle's.
"""
