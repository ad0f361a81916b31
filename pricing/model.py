"""The demand model: a feed-forward network predicting ``log1p(quantity)``.

Depth, width, dropout and batch norm are hyper-parameters; ``build_model`` makes a network
from the plain ``dict`` the tuning stage stores in the checkpoint, so a checkpoint loaded
with ``torch.load(..., weights_only=True)`` can be rebuilt without pickled classes.
"""
from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from pricing.errors import DataValidationError

# Bump when the checkpoint's keys or meaning change; inference refuses other versions.
CHECKPOINT_FORMAT = 1


class DemandNet(nn.Module):
    """``n_features`` → [Linear → (BatchNorm) → ReLU → Dropout] × len(hidden_units) → Linear(1).

    ``forward`` returns shape ``(n, 1)`` (what SHAP's explainers expect); ``predict_log``
    clips the inputs to the training range first and returns a flat NumPy array.

    Input clipping: a ReLU network extrapolates linearly, and the heavy-tailed scaled
    features (spend, price squared, …) reach values far outside anything seen in training
    on newer data, which gave absurd quantities. The buffers ``input_min``/``input_max``
    (set with ``set_input_range`` from the train split, saved in the state dict) bound
    every input to the train range.
    """

    def __init__(
        self,
        n_features: int,
        hidden_units: Sequence[int],
        dropouts: Sequence[float] | float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if n_features < 1:
            raise DataValidationError(f"the network needs at least one input feature, got {n_features}")
        if isinstance(dropouts, (int, float)):
            dropouts = [float(dropouts)] * len(hidden_units)
        if len(dropouts) != len(hidden_units):
            raise DataValidationError(
                f"{len(hidden_units)} hidden layers but {len(dropouts)} dropout rates"
            )
        layers: list[nn.Module] = []
        width = n_features
        for units, rate in zip(hidden_units, dropouts):
            if units < 1 or not 0.0 <= rate < 1.0:
                raise DataValidationError(f"bad layer: {units} units, dropout {rate}")
            layers.append(nn.Linear(width, int(units)))
            if batch_norm:
                layers.append(nn.BatchNorm1d(int(units)))
            layers.append(nn.ReLU())
            if rate > 0:
                layers.append(nn.Dropout(float(rate)))
            width = int(units)
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        self.register_buffer("input_min", torch.full((n_features,), float("-inf")))
        self.register_buffer("input_max", torch.full((n_features,), float("inf")))

    def set_input_range(self, x_train: np.ndarray) -> "DemandNet":
        """Bound future inputs to the per-feature min/max of ``x_train``."""
        x = torch.as_tensor(np.asarray(x_train, dtype=np.float32))
        self.input_min.copy_(x.min(dim=0).values)
        self.input_max.copy_(x.max(dim=0).values)
        return self

    def clip_inputs(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``x`` as a float32 tensor, each feature clipped to the training range."""
        tensor = torch.as_tensor(np.asarray(x, dtype=np.float32))
        return torch.maximum(torch.minimum(tensor, self.input_max), self.input_min)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @torch.no_grad()
    def predict_log(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """Predictions on the ``log1p(quantity)`` scale, in eval mode, as a 1-D float64 array."""
        was_training = self.training
        self.eval()
        out = self(self.clip_inputs(x)).reshape(-1).double().numpy()
        self.train(was_training)
        return out


class DemandEnsemble(nn.Module):
    """The mean of several ``DemandNet`` outputs (the tuning study's best few trials).

    Same interface as ``DemandNet`` (``forward`` → ``(n, 1)``, ``predict_log``,
    ``clip_inputs``, ``set_input_range``); its own ``input_min``/``input_max`` bound the
    inputs once for all members. Averaging is linear, so DeepSHAP explains it like one net.
    """

    def __init__(self, members: Sequence[DemandNet]) -> None:
        super().__init__()
        if len(members) < 1:
            raise DataValidationError("an ensemble needs at least one member network")
        n_features = members[0].input_min.shape[0]
        if any(m.input_min.shape[0] != n_features for m in members):
            raise DataValidationError("ensemble members take different numbers of input features")
        self.members = nn.ModuleList(members)
        self.register_buffer("input_min", members[0].input_min.detach().clone())
        self.register_buffer("input_max", members[0].input_max.detach().clone())

    set_input_range = DemandNet.set_input_range
    clip_inputs = DemandNet.clip_inputs
    predict_log = DemandNet.predict_log

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(x) for member in self.members]).mean(dim=0)


def hparams_of(
    n_features: int,
    hidden_units: Sequence[int],
    dropouts: Sequence[float],
    batch_norm: bool,
    **training: Any,
) -> dict[str, Any]:
    """The plain-dict description of a network (plus training settings) stored in a checkpoint."""
    return {
        "n_features": int(n_features),
        "hidden_units": [int(u) for u in hidden_units],
        "dropouts": [float(d) for d in dropouts],
        "batch_norm": bool(batch_norm),
        **training,
    }


def ensemble_hparams(members: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``hparams`` of an ensemble: the first (best) member's keys at the top level — what
    readers of a single network's ``hparams`` expect — plus every member's under ``ensemble``."""
    if not members:
        raise DataValidationError("an ensemble needs at least one member")
    return {**dict(members[0]), "ensemble": [dict(m) for m in members]}


def build_model(hparams: Mapping[str, Any]) -> DemandNet | DemandEnsemble:
    """A fresh (untrained) network — or ensemble, if ``hparams`` has ``ensemble`` — shaped as
    ``hparams`` says."""
    if "ensemble" in hparams:
        return DemandEnsemble([build_model(member) for member in hparams["ensemble"]])
    return DemandNet(
        n_features=int(hparams["n_features"]),
        hidden_units=list(hparams["hidden_units"]),
        dropouts=list(hparams["dropouts"]),
        batch_norm=bool(hparams["batch_norm"]),
    )


def checkpoint_bytes(
    model: DemandNet | DemandEnsemble,
    hparams: Mapping[str, Any],
    feature_names: Sequence[str],
    transformer_md5: str,
    stockcode: str,
) -> bytes:
    """Serialise a checkpoint: tensors and primitive containers only (``weights_only`` loads it).

    Saved through an in-memory buffer so the zip's internal record names do not depend on
    the (temporary) file name: same weights → same bytes.
    """
    if len(feature_names) != hparams["n_features"]:
        raise DataValidationError(
            f"{len(feature_names)} feature names for a network with {hparams['n_features']} inputs"
        )
    payload = {
        "format": CHECKPOINT_FORMAT,
        "stockcode": str(stockcode),
        "target": "log1p_quantity",
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "hparams": dict(hparams),
        "feature_names": [str(n) for n in feature_names],
        "transformer_md5": str(transformer_md5),
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def load_checkpoint(source: Any) -> tuple[DemandNet | DemandEnsemble, dict[str, Any]]:
    """Load a checkpoint safely (CPU, ``weights_only=True``); return the model (eval mode) and payload."""
    payload = torch.load(source, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise DataValidationError(
            f"not a demand-model checkpoint of format {CHECKPOINT_FORMAT}: {source}"
        )
    model = build_model(payload["hparams"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload


def model_version(data: bytes, stockcode: str) -> str:
    """A short, content-derived model version: ``dfn-<stockcode>-<md5 of the checkpoint[:12]>``."""
    return f"dfn-{stockcode}-{hashlib.md5(data).hexdigest()[:12]}"
