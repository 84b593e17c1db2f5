"""The exceptions daskstyle raises; each message says what to do next."""


class DaskstyleError(Exception):
    """Base class: the CLI prints the message in one line and exits non-zero."""


class InputError(DaskstyleError, ValueError):
    """An image, array or option the user gave cannot be used."""


class WeightsError(DaskstyleError):
    """Network weights are missing, unreadable or belong to another architecture."""
