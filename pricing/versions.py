"""How a model version is spelled, wherever it appears: the registry record, the stages'
metrics and the portable model's spec, the API's answers and the page.

A version is the start of the checkpoint's md5 (the hash DVC stores it under), so anyone
holding the file can tell which version it is; a decision that trained nothing is named by the
hash of its lineage instead.
"""
from __future__ import annotations

MODEL_VERSION_DIGITS = 12


def model_version(md5: str) -> str:
    """The model version of the checkpoint (or lineage) whose md5 is ``md5``."""
    return md5[:MODEL_VERSION_DIGITS]
