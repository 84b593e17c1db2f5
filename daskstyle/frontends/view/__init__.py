"""``daskstyle view``: a run or a painting in the browser, served read-only on 127.0.0.1.

:mod:`~daskstyle.frontends.view.deepzoom` cuts an image into Deep Zoom tiles;
:mod:`~daskstyle.frontends.view.reading` reads files inside one folder only, never through a
symbolic link, with a bounded cache of chunks; :mod:`~daskstyle.frontends.view.sources` says
what a run directory or a finished painting holds as images (each level's canvas with its
overview, a TIFF's pyramid, an OME-Zarr's levels); :mod:`~daskstyle.frontends.view.status`
reads a run's progress, loss and ETA; :mod:`~daskstyle.frontends.view.server` serves the page
(its files in ``daskstyle/data/view``, with OpenSeadragon 6.1.1 and its licence), the tiles
and the status to whoever holds the URL's token. Part of the front ends: it may import every
layer below.
"""
