"""Pictures and files in and out: reading PNG, JPEG and (Big)TIFF into Dask arrays with
clear errors, writing PNG, JPEG, pyramid BigTIFF and OME-Zarr (print-ready: sRGB profile and
resolution), atomic writes, and resizing Dask images chunk by chunk. It may import
:mod:`daskstyle.core` only.
"""
