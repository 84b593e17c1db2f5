"""daskstyle: out-of-core, exactly tiled Gatys style transfer on Dask."""

from daskstyle.core.errors import DaskstyleError, InputError, WeightsError

__all__ = ["DaskstyleError", "InputError", "WeightsError", "loss_and_grad", "style_graph"]
__version__ = "0.1.0"


def __getattr__(name: str):
    """``loss_and_grad`` and ``style_graph`` load torch when first used: the command line and
    the workers' forkserver start without it."""
    if name in ("loss_and_grad", "style_graph"):
        from daskstyle import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
