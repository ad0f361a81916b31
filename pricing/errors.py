"""Errors the domain raises for bad input.

A ``DataValidationError`` is final: retrying cannot fix it, so orchestration fails at once
(the stage CLI exits with ``EXIT_DATA_VALIDATION`` and prints the message on one line).
"""


class DataValidationError(ValueError):
    """The input data or parameters are wrong in a way the user has to fix."""


class DriftGateError(RuntimeError):
    """Training was asked for on a product whose data drifted, with the gate blocking."""


class InsufficientDataError(DriftGateError):
    """Training was asked for on a product whose drift could not be judged (too little data),
    and params allow it neither to train nor give a human override. A gate refusal, like drift."""
