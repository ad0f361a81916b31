"""The demand model: a feed-forward network predicting ``log1p(quantity)``.

Depth, width, dropout and batch norm are hyper-parameters; ``build_model`` makes a network
from the plain ``dict`` the tuning stage stores in the checkpoint, so a checkpoint loaded
with ``torch.load(..., weights_only=True)`` can be rebuilt without pickled classes.

Two architectures (``hparams["architecture"]``):

- ``price_monotone`` (what tuning builds): ``log1p(q) = context(x_other) + price(x_price)``.
  The context path is the tutorial's MLP over every feature but the list-price ones; the
  price path is non-increasing in each list-price feature *by construction* (non-negative
  weights through a ReLU layer, subtracted). Every step between the list price and the
  network (log1p, standard scaling, clipping to the train range) is non-decreasing, so
  predicted demand never rises with the list price, for any context.
- ``plain``: one MLP over all features, no promise about price (kept for comparisons and
  for checks that the risk gate catches an unsound price response).
"""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from pricing.errors import DataValidationError

# Bump when the checkpoint's keys or meaning change; inference refuses other versions.
CHECKPOINT_FORMAT = 2


def mlp(
    n_in: int, hidden_units: Sequence[int], dropouts: Sequence[float] | float, batch_norm: bool
) -> nn.Sequential:
    """[Linear → (BatchNorm) → ReLU → Dropout] × len(hidden_units) → Linear(1)."""
    if isinstance(dropouts, (int, float)):
        dropouts = [float(dropouts)] * len(hidden_units)
    if len(dropouts) != len(hidden_units):
        raise DataValidationError(f"{len(hidden_units)} hidden layers but {len(dropouts)} dropout rates")
    layers: list[nn.Module] = []
    width = n_in
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
    return nn.Sequential(*layers)


class InputRange:
    """Input clipping shared by the networks: buffers ``input_min``/``input_max``.

    A ReLU network extrapolates linearly, and the heavy-tailed scaled features (spend,
    quantities, …) reach values far outside anything seen in training on newer data, which
    gave absurd quantities. Every input is bounded to the train range (set with
    ``set_input_range`` from the train split, saved in the state dict).
    """

    def _register_range(self, n_features: int) -> None:
        self.register_buffer("input_min", torch.full((n_features,), float("-inf")))
        self.register_buffer("input_max", torch.full((n_features,), float("inf")))

    def set_input_range(self, x_train: np.ndarray):
        """Bound future inputs to the per-feature min/max of ``x_train``."""
        x = torch.as_tensor(np.asarray(x_train, dtype=np.float32))
        self.input_min.copy_(x.min(dim=0).values)
        self.input_max.copy_(x.max(dim=0).values)
        return self

    def clip_inputs(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``x`` as a float32 tensor, each feature clipped to the training range."""
        tensor = torch.as_tensor(np.asarray(x, dtype=np.float32))
        return torch.maximum(torch.minimum(tensor, self.input_max), self.input_min)

    @torch.no_grad()
    def predict_log(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """Predictions on the ``log1p(quantity)`` scale, in eval mode, as a 1-D float64 array."""
        was_training = self.training
        self.eval()
        out = self(self.clip_inputs(x)).reshape(-1).double().numpy()
        self.train(was_training)
        return out


class DemandNet(InputRange, nn.Module):
    """``n_features`` → [Linear → (BatchNorm) → ReLU → Dropout] × len(hidden_units) → Linear(1).

    ``forward`` returns shape ``(n, 1)`` (what SHAP's explainers expect); ``predict_log``
    clips the inputs to the training range first (``InputRange``) and returns a flat NumPy array.
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
        self.net = mlp(n_features, hidden_units, dropouts, batch_norm)
        self._register_range(n_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class NonIncreasing(nn.Module):
    """``z`` (n, k) → (n, 1), non-increasing in every column of ``z``:
    ``-(softplus(a)·z + softplus(c)·relu(softplus(W) z + b))``.

    Weights pass through softplus, so they are positive whatever the optimiser does; the
    ReLU of a non-decreasing map is non-decreasing; the sum is subtracted. Raw weights start
    negative (softplus ≈ 0.05–0.13): the price effect starts near zero and must be learnt.
    """

    def __init__(self, n_in: int, units: int) -> None:
        super().__init__()
        if n_in < 1 or units < 1:
            raise DataValidationError(f"bad price path: {n_in} inputs, {units} units")
        self.linear_raw = nn.Parameter(torch.full((1, n_in), -2.0))
        self.hidden_raw = nn.Parameter(torch.randn(units, n_in) * 0.5 - 1.0)
        self.hidden_bias = nn.Parameter(torch.zeros(units))
        self.out_raw = nn.Parameter(torch.full((1, units), -3.0))
        self.relu = nn.ReLU()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        softplus = nn.functional.softplus
        hidden = self.relu(nn.functional.linear(z, softplus(self.hidden_raw), self.hidden_bias))
        return -(nn.functional.linear(z, softplus(self.linear_raw)) + nn.functional.linear(hidden, softplus(self.out_raw)))


class PriceMonotoneNet(InputRange, nn.Module):
    """``context(x[:, context_index]) + price(x[:, price_index])`` on the log1p scale; the price
    path is ``NonIncreasing``, the context path the tutorial's MLP (see the module docstring)."""

    def __init__(
        self,
        n_features: int,
        price_index: Sequence[int],
        hidden_units: Sequence[int],
        dropouts: Sequence[float] | float = 0.0,
        batch_norm: bool = False,
        price_units: int = 8,
    ) -> None:
        super().__init__()
        price_index = [int(i) for i in price_index]
        if not price_index or len(set(price_index)) != len(price_index) or not all(
            0 <= i < n_features for i in price_index
        ):
            raise DataValidationError(f"bad price feature positions {price_index} for {n_features} features")
        context_index = [i for i in range(n_features) if i not in set(price_index)]
        if not context_index:
            raise DataValidationError("the network needs at least one context feature besides the price")
        self.register_buffer("price_index", torch.tensor(price_index, dtype=torch.long))
        self.register_buffer("context_index", torch.tensor(context_index, dtype=torch.long))
        self.context = mlp(len(context_index), hidden_units, dropouts, batch_norm)
        self.price = NonIncreasing(len(price_index), int(price_units))
        self._register_range(n_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.context(x[:, self.context_index]) + self.price(x[:, self.price_index])


class DemandEnsemble(InputRange, nn.Module):
    """The mean of several networks' outputs (the tuning study's best few trials).

    Same interface as ``DemandNet`` (``forward`` → ``(n, 1)``, ``predict_log``,
    ``clip_inputs``, ``set_input_range``); its own ``input_min``/``input_max`` bound the
    inputs once for all members. Averaging is linear, so DeepSHAP explains it like one net,
    and a mean of non-increasing price responses is non-increasing.
    """

    def __init__(self, members: Sequence[DemandNet | PriceMonotoneNet]) -> None:
        super().__init__()
        if len(members) < 1:
            raise DataValidationError("an ensemble needs at least one member network")
        n_features = members[0].input_min.shape[0]
        if any(m.input_min.shape[0] != n_features for m in members):
            raise DataValidationError("ensemble members take different numbers of input features")
        self.members = nn.ModuleList(members)
        self.register_buffer("input_min", members[0].input_min.detach().clone())
        self.register_buffer("input_max", members[0].input_max.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(x) for member in self.members]).mean(dim=0)


PLAIN = "plain"
PRICE_MONOTONE = "price_monotone"
Network = DemandNet | PriceMonotoneNet | DemandEnsemble


def hparams_of(
    n_features: int,
    hidden_units: Sequence[int],
    dropouts: Sequence[float],
    batch_norm: bool,
    price_index: Sequence[int] | None = None,
    price_units: int = 8,
    **training: Any,
) -> dict[str, Any]:
    """The plain-dict description of a network (plus training settings) stored in a checkpoint.

    With ``price_index`` (positions of the list-price features) the network is
    ``price_monotone``; without it, ``plain``.
    """
    shape: dict[str, Any] = {"architecture": PLAIN}
    if price_index is not None:
        shape = {"architecture": PRICE_MONOTONE, "price_index": [int(i) for i in price_index],
                 "price_units": int(price_units)}
    return {
        "n_features": int(n_features),
        "hidden_units": [int(u) for u in hidden_units],
        "dropouts": [float(d) for d in dropouts],
        "batch_norm": bool(batch_norm),
        **shape,
        **training,
    }


def ensemble_hparams(members: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``hparams`` of an ensemble: the first (best) member's keys at the top level — what
    readers of a single network's ``hparams`` expect — plus every member's under ``ensemble``."""
    if not members:
        raise DataValidationError("an ensemble needs at least one member")
    return {**dict(members[0]), "ensemble": [dict(m) for m in members]}


def build_model(hparams: Mapping[str, Any]) -> Network:
    """A fresh (untrained) network — or ensemble, if ``hparams`` has ``ensemble`` — shaped as
    ``hparams`` says."""
    if "ensemble" in hparams:
        return DemandEnsemble([build_model(member) for member in hparams["ensemble"]])
    architecture = hparams.get("architecture", PLAIN)
    if architecture == PRICE_MONOTONE:
        return PriceMonotoneNet(
            n_features=int(hparams["n_features"]),
            price_index=list(hparams["price_index"]),
            hidden_units=list(hparams["hidden_units"]),
            dropouts=list(hparams["dropouts"]),
            batch_norm=bool(hparams["batch_norm"]),
            price_units=int(hparams["price_units"]),
        )
    if architecture != PLAIN:
        raise DataValidationError(f"unknown network architecture {architecture!r}")
    return DemandNet(
        n_features=int(hparams["n_features"]),
        hidden_units=list(hparams["hidden_units"]),
        dropouts=list(hparams["dropouts"]),
        batch_norm=bool(hparams["batch_norm"]),
    )


def checkpoint_bytes(
    model: Network,
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


def load_checkpoint(source: Any) -> tuple[Network, dict[str, Any]]:
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


def _layer_plan(sequential: nn.Sequential, key: str, arrays: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    plan: list[dict[str, Any]] = []
    for i, layer in enumerate(sequential):
        name = f"{key}.{i}"
        if isinstance(layer, nn.Linear):
            arrays[f"{name}.weight"] = layer.weight.detach().numpy().copy()
            arrays[f"{name}.bias"] = layer.bias.detach().numpy().copy()
            plan.append({"kind": "linear", "key": name})
        elif isinstance(layer, nn.BatchNorm1d):
            for part in ("weight", "bias", "running_mean", "running_var"):
                arrays[f"{name}.{part}"] = getattr(layer, part).detach().numpy().copy()
            plan.append({"kind": "batch_norm", "key": name, "eps": float(layer.eps)})
        elif isinstance(layer, nn.ReLU):
            plan.append({"kind": "relu"})
        elif isinstance(layer, nn.Dropout):
            continue  # identity at inference
        else:
            raise DataValidationError(f"no portable form for layer {type(layer).__name__}")
    return plan


@torch.no_grad()
def portable_network(model: Network, feature_names: Sequence[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The network as a JSON-able layer plan plus float32 arrays (``pricing.portable`` runs it).

    The price path's weights are exported as the network uses them (after softplus)."""
    members = list(model.members) if isinstance(model, DemandEnsemble) else [model]
    arrays: dict[str, np.ndarray] = {
        "input_min": model.input_min.numpy().copy(), "input_max": model.input_max.numpy().copy(),
    }
    plans = []
    for m, member in enumerate(members):
        key = f"m{m}"
        if isinstance(member, PriceMonotoneNet):
            softplus = nn.functional.softplus
            arrays[f"{key}.price.linear"] = softplus(member.price.linear_raw).numpy().copy()
            arrays[f"{key}.price.hidden_weight"] = softplus(member.price.hidden_raw).numpy().copy()
            arrays[f"{key}.price.hidden_bias"] = member.price.hidden_bias.numpy().copy()
            arrays[f"{key}.price.out"] = softplus(member.price.out_raw).numpy().copy()
            plans.append({
                "architecture": PRICE_MONOTONE, "key": key,
                "price_index": member.price_index.tolist(), "context_index": member.context_index.tolist(),
                "layers": _layer_plan(member.context, f"{key}.context", arrays),
            })
        else:
            plans.append({"architecture": PLAIN, "key": key, "layers": _layer_plan(member.net, f"{key}.net", arrays)})
    return {"feature_names": [str(n) for n in feature_names], "members": plans}, arrays
