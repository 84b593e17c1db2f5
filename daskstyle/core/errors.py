"""The exceptions daskstyle raises; each message says what to do next."""


class DaskstyleError(Exception):
    """Base class: the CLI prints the message in one line and exits non-zero."""


class InputError(DaskstyleError, ValueError):
    """An image, array or option the user gave cannot be used."""


class WeightsError(DaskstyleError):
    """Network weights are missing, unreadable or belong to another architecture."""


class SettingError(InputError):
    """A setting whose value breaks its rule; the message names the setting as the caller
    spells it (``--max-iters`` on the command line, ``max_iters`` in a TOML file)."""

    def __init__(self, name: str, rule: str, value):
        self.name, self.rule, self.value = name, rule, value
        super().__init__(self.spelled(name))

    def spelled(self, name: str) -> str:
        """The message with the setting called ``name``."""
        return f"{name} {self.rule}, not {self.value!r}"


class DamagedStateError(DaskstyleError):
    """A file of a run directory is missing, truncated or unreadable."""


class NotFiniteError(DaskstyleError):
    """A step's loss, gradient or pixel update is not finite: the step is not committed."""

    def __init__(self, step: int, what: str, value: float, level: str = ""):
        self.step, self.what, self.value = step, what, value
        super().__init__(
            f"{level}step {step}: the {what} is not finite ({value}); the step was not kept, and "
            "the run directory holds the last good one: find the cause, then continue with --resume"
        )
