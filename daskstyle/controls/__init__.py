"""The artistic controls that act on pictures rather than on the loss: colour
control (luminance only, colour matching), the first level's start image (content, noise,
gray or a picture), region guides from label pictures and the seam measure of tiled
paintings. It may import
:mod:`daskstyle.io` and :mod:`daskstyle.core`; :mod:`daskstyle.networks` is its independent
sibling.
"""
