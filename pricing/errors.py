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


def from_section(cls, section, name: str):
    """A params dataclass ``cls`` from the ``name`` section of params.yaml; an unknown key (a typo
    that would be ignored) is an error naming it."""
    values = dict(section or {})
    unknown = sorted(set(values) - set(cls.__dataclass_fields__))
    if unknown:
        raise DataValidationError(f"{name}: unknown key(s) {', '.join(unknown)}")
    return cls(**values)
