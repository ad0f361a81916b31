"""Training loop: mini-batch optimisation on ``log1p(quantity)`` with early stopping.

Determinism: ``seed_everything`` pins Python, NumPy and torch seeds, single-threaded
deterministic kernels; the batch order comes from a ``torch.Generator`` seeded per run.
Same data + hyper-parameters + seed → bit-identical weights.
"""
from __future__ import annotations

import copy
import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from pricing.errors import DataValidationError
from pricing.features import LIST_PRICE

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "sgd": torch.optim.SGD,
    "adamax": torch.optim.Adamax,
    "radam": torch.optim.RAdam,
}


def seed_everything(seed: int, threads: int | None = 1) -> None:
    """Seed Python, NumPy and torch; deterministic kernels; ``threads`` intra-op threads.

    One thread makes results independent of the machine's core count (and is also the
    fastest choice for networks this small).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    if threads is not None:
        torch.set_num_threads(int(threads))


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """``name``'s optimizer; ``weight_decay`` is L2 (decoupled for adamw, as torch defines it)."""
    try:
        cls = OPTIMIZERS[name]
    except KeyError:
        raise DataValidationError(
            f"unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}"
        ) from None
    if weight_decay < 0:
        raise DataValidationError(f"weight decay must be >= 0, got {weight_decay}")
    if cls is torch.optim.SGD:
        return cls(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    return cls(params, lr=lr, weight_decay=weight_decay)


# Training losses on the log1p(quantity) scale. Early stopping and model selection always use
# the validation MSE (the reported metric); Huber only changes what the optimiser minimises:
# quadratic within `huber_delta` of the target, linear beyond, so the few lines with a
# quantity 10-100x the usual one do not dominate the gradient.
LOSSES = ("mse", "huber")


def make_loss(name: str, huber_delta: float = 1.0) -> nn.Module:
    if name == "mse":
        return nn.MSELoss()
    if name == "huber":
        if huber_delta <= 0:
            raise DataValidationError(f"huber_delta must be > 0, got {huber_delta}")
        return nn.HuberLoss(delta=float(huber_delta))
    raise DataValidationError(f"unknown loss {name!r}; choose one of {list(LOSSES)}")


@dataclass
class TrainResult:
    best_val_loss: float
    best_epoch: int  # 0-based index of the epoch whose weights were restored
    epochs_run: int
    train_losses: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)


def _as_tensor(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float32))


def evaluate_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean squared error of ``model`` in eval mode (no dropout, BatchNorm running stats)."""
    model.eval()
    with torch.no_grad():
        return float(nn.functional.mse_loss(model(x).reshape(-1), y.reshape(-1)).item())


def train_model(
    model: nn.Module,
    x_train,
    y_train,
    x_val,
    y_val,
    *,
    optimizer: str = "adam",
    lr: float = 1e-3,
    batch_size: int = 32,
    num_epochs: int = 100,
    patience: int | None = 10,
    seed: int = 0,
    on_epoch: Callable[[int, float], None] | None = None,
    weight_decay: float = 0.0,
    loss: str = "mse",
    huber_delta: float = 1.0,
    lr_plateau_patience: int | None = None,
    lr_plateau_factor: float = 0.5,
) -> TrainResult:
    """Train ``model`` in place on ``loss`` (MSE or Huber); stop after ``patience`` epochs
    without a better validation MSE and restore the weights of the best epoch.

    ``lr_plateau_patience``: halve (``lr_plateau_factor``) the learning rate after that many
    epochs without a better validation MSE (``None``: constant learning rate).

    ``on_epoch(epoch, val_loss)`` is called after every epoch (Optuna's pruning hook); it
    may raise to abort the run. ``x_val``/``y_val`` drive early stopping only — they must
    not be the data the reported test metrics come from.
    """
    xt, yt = _as_tensor(x_train), _as_tensor(y_train).reshape(-1)
    xv, yv = _as_tensor(x_val), _as_tensor(y_val).reshape(-1)
    if len(xt) != len(yt) or len(xv) != len(yv):
        raise DataValidationError("features and target have different row counts")
    if len(xt) < 2 or len(xv) < 1:
        raise DataValidationError(
            f"too few rows to train: {len(xt)} train, {len(xv)} validation"
        )
    generator = torch.Generator().manual_seed(int(seed))
    opt = make_optimizer(optimizer, model.parameters(), lr, weight_decay)
    loss_fn = make_loss(loss, huber_delta)
    scheduler = None
    if lr_plateau_patience is not None:
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=float(lr_plateau_factor), patience=int(lr_plateau_patience)
        )
    n = len(xt)
    batch_size = max(1, min(int(batch_size), n))

    best_loss = float("inf")
    best_epoch = -1
    best_state = copy.deepcopy(model.state_dict())
    result = TrainResult(best_val_loss=best_loss, best_epoch=-1, epochs_run=0)
    for epoch in range(int(num_epochs)):
        model.train()
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            if len(idx) < 2 and any(isinstance(m, nn.BatchNorm1d) for m in model.modules()):
                continue  # BatchNorm cannot normalise a batch of one
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]).reshape(-1), yt[idx])
            loss.backward()
            opt.step()
            total += float(loss.item()) * len(idx)
        train_loss = total / n
        result.train_losses.append(train_loss)
        result.epochs_run = epoch + 1
        val_loss = evaluate_loss(model, xv, yv)
        if not np.isfinite(val_loss):
            val_loss = float("inf")
        result.val_losses.append(val_loss)
        if scheduler is not None and np.isfinite(val_loss):
            scheduler.step(val_loss)
        if val_loss < best_loss:
            best_loss, best_epoch = val_loss, epoch
            best_state = copy.deepcopy(model.state_dict())
        if on_epoch is not None:
            on_epoch(epoch, val_loss)
        if patience is not None and epoch - best_epoch >= int(patience):
            break
    model.load_state_dict(best_state)
    model.eval()
    result.best_val_loss = best_loss
    result.best_epoch = best_epoch
    return result


# -- reading the preprocess stage's outputs ------------------------------------------------
@dataclass
class SplitData:
    """One split of ``preprocess@<sc>``: model input, raw features, target and row identifiers."""

    x: pd.DataFrame  # transformed features, columns == feature_names
    x_raw: pd.DataFrame  # engineered features before transformation (list_price, is_registered, …)
    y: pd.DataFrame  # quantity, log1p_quantity
    meta: pd.DataFrame | None


def read_feature_names(layout, stockcode: str) -> list[str]:
    path = layout.feature_names(stockcode)
    if not path.exists():
        raise DataValidationError(f"{path} is missing: run preprocess@{stockcode} first")
    names = json.loads(path.read_text())
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise DataValidationError(f"{path} must be a non-empty JSON list of feature names")
    return names


def load_split(layout, stockcode: str, split: str, feature_names: list[str]) -> SplitData:
    """Read and check one split written by ``preprocess@<stockcode>``."""
    def read(path, required: bool = True):
        if not path.exists():
            if required:
                raise DataValidationError(f"{path} is missing: run preprocess@{stockcode} first")
            return None
        return pd.read_parquet(path)

    x = read(layout.split_features(stockcode, split, transformed=True))
    x_raw = read(layout.split_features(stockcode, split, transformed=False))
    y = read(layout.split_target(stockcode, split))
    meta = read(layout.split_meta(stockcode, split), required=False)
    if list(x.columns) != list(feature_names):
        missing = [n for n in feature_names if n not in x.columns]
        extra = [c for c in x.columns if c not in feature_names]
        raise DataValidationError(
            f"X_{split} columns differ from feature_names.json (missing {missing}, extra {extra}, "
            "or a different order)"
        )
    for column in ("quantity", "log1p_quantity"):
        if column not in y.columns:
            raise DataValidationError(f"y_{split} lacks column {column!r}")
    if LIST_PRICE not in x_raw.columns:
        raise DataValidationError(f"X_{split}_raw lacks column {LIST_PRICE!r}")
    lengths = {len(x), len(x_raw), len(y)} | ({len(meta)} if meta is not None else set())
    if len(lengths) != 1:
        raise DataValidationError(f"{split} files have different row counts: {sorted(lengths)}")
    if len(x) == 0:
        raise DataValidationError(f"the {split} split of {stockcode} is empty")
    if not np.isfinite(x.to_numpy(dtype=np.float64)).all():
        raise DataValidationError(f"X_{split} contains NaN or infinite values")
    return SplitData(
        x=x.reset_index(drop=True), x_raw=x_raw.reset_index(drop=True),
        y=y.reset_index(drop=True), meta=None if meta is None else meta.reset_index(drop=True),
    )


def file_md5(path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
