"""daskstyle: out-of-core, exactly tiled Gatys style transfer on Dask."""

from .api import loss_and_grad, style_graph
from .errors import DaskstyleError, InputError, WeightsError

__all__ = ["DaskstyleError", "InputError", "WeightsError", "loss_and_grad", "style_graph"]
__version__ = "0.1.0"
