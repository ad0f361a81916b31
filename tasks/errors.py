"""How a stage run can fail, as orchestration sees it: retry, or stop with the message."""
from __future__ import annotations

from pricing.errors import DataValidationError


class StageError(RuntimeError):
    """A DVC stage did not produce a committed, well-formed result."""

    transient = False

    def __init__(self, address: str, message: str, output: str = "") -> None:
        super().__init__(f"{address}: {message}")
        self.address = address
        self.detail = message
        self.output = output  # the tail of what dvc and the stage printed

    def __reduce__(self):  # keep the fields through pickling (Prefect persists failures)
        return (type(self), (self.address, self.detail, self.output))


class TransientStageError(StageError):
    """Worth retrying: a busy DVC lock, a remote that timed out."""

    transient = True


class StageDataValidationError(StageError, DataValidationError):
    """The stage rejected its input (``DataValidationError``): final, never retried."""


class StageDriftGateError(StageError):
    """The stage refused to train on drifted data (``DriftGateError``): final."""


class StageOutputError(StageError):
    """The stage exited 0 but an output is missing or a metrics file does not parse."""


class StageCommandError(StageError):
    """Any other failure of the stage command or of DVC: final until someone looks."""


def is_transient(error: BaseException | None) -> bool:
    return bool(getattr(error, "transient", False))
