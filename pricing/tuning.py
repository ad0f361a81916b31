"""Hyper-parameter search with Optuna: seeded TPE sampler + median pruner, scored on validation.

The space is the tutorial's: number of layers, units and dropout per layer, log-uniform
learning rate, optimizer (adam/adamw/rmsprop/sgd/adamax/radam), batch size — plus batch
norm on/off. Each trial trains with early stopping (best weights restored) and reports its
validation loss per epoch so the pruner can stop hopeless trials. The test split never
enters this module. Optional space keys add weight decay, a Huber training loss and a
plateau learning-rate schedule; ``ensemble_size`` k returns the mean of the k best trials'
networks instead of the single best (chosen on validation, like it).

Reproducibility: the sampler's seed and each trial's training seed (``seed + trial
number``) come from one ``seed``. ``timeout`` is a safety net: if it cuts the study short
the result depends on machine speed, and ``TuningResult.stopped_by_timeout`` says so.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna

from pricing.errors import DataValidationError
from pricing.model import DemandEnsemble, Network, build_model, ensemble_hparams, hparams_of
from pricing.training import LOSSES, OPTIMIZERS, seed_everything, train_model

DEFAULT_SPACE: dict[str, Any] = {
    "n_layers": [1, 3],
    "n_units": [16, 256],
    "dropout": [0.0, 0.5],
    "lr": [1.0e-4, 1.0e-2],
    "optimizers": ["adam", "adamw", "rmsprop", "sgd", "adamax", "radam"],
    "batch_sizes": [16, 32, 64, 128],
    "batch_norm": [False, True],
    "price_units": [4, 16],
}
# Optional keys of a space (absent: the value after the colon, and nothing is sampled, so a
# space without them draws exactly the trials it always did):
#   weight_decay: [lo, hi]            log-uniform L2 penalty (absent: 0)
#   loss: [mse, huber]                training loss(es) on log1p(quantity) (absent: mse)
#   huber_delta: 1.0                  the Huber loss's quadratic zone, log1p units
#   lr_plateau_patience: null         epochs without a better val MSE before the lr halves
TRAINING_DEFAULTS: dict[str, Any] = {"loss": ["mse"], "huber_delta": 1.0, "lr_plateau_patience": None}


def tune_options(section: Mapping[str, Any]) -> dict[str, Any]:
    """``tune``'s keyword arguments from params.yaml's ``tune`` section: the one reading of it,
    shared by the tune stage and the model-quality benchmark."""
    return {
        "n_trials": int(section["n_trials"]),
        "num_epochs": int(section["num_epochs"]),
        "patience": int(section["patience"]),
        "timeout": section.get("timeout"),
        "space": section.get("space"),
        "pruner_startup_trials": int(section.get("pruner_startup_trials", 5)),
        "pruner_warmup_epochs": int(section.get("pruner_warmup_epochs", 10)),
        "threads": section.get("torch_threads", 1),
        "ensemble_size": int(section.get("ensemble_size", 1)),
    }


@dataclass
class TuningResult:
    model: Network  # best trial's network (or the top-k's mean), eval mode
    hparams: dict[str, Any]
    best_value: float  # validation MSE on the log1p scale (of the ensemble, if one)
    best_trial: int
    ensemble_trials: list[int] = field(default_factory=list)  # members, best first
    history: list[dict[str, Any]] = field(default_factory=list)
    n_complete: int = 0
    n_pruned: int = 0
    n_failed: int = 0
    stopped_by_timeout: bool = False
    seconds: float = 0.0


def suggest_hparams(
    trial: optuna.Trial, n_features: int, space: Mapping[str, Any], price_index: Sequence[int] | None = None
) -> dict[str, Any]:
    """Draw one configuration from ``space`` (see ``DEFAULT_SPACE`` for the keys). With
    ``price_index`` the network is price-monotone and ``price_units`` sizes its price path."""
    lo_layers, hi_layers = (int(v) for v in space["n_layers"])
    lo_units, hi_units = (int(v) for v in space["n_units"])
    lo_drop, hi_drop = (float(v) for v in space["dropout"])
    lo_lr, hi_lr = (float(v) for v in space["lr"])
    for name in space["optimizers"]:
        if name not in OPTIMIZERS:
            raise DataValidationError(f"unknown optimizer {name!r} in the search space")
    n_layers = trial.suggest_int("n_layers", lo_layers, hi_layers)
    units = [trial.suggest_int(f"n_units_l{i}", lo_units, hi_units, log=True) for i in range(n_layers)]
    drops = [trial.suggest_float(f"dropout_l{i}", lo_drop, hi_drop) for i in range(n_layers)]
    batch_norm_choices = [bool(b) for b in space.get("batch_norm", [False])]
    price_units = 8
    if price_index is not None:
        lo_price, hi_price = (int(v) for v in space.get("price_units", DEFAULT_SPACE["price_units"]))
        price_units = trial.suggest_int("price_units", lo_price, hi_price, log=True)
    hp = hparams_of(
        n_features,
        units,
        drops,
        trial.suggest_categorical("batch_norm", batch_norm_choices),
        price_index=price_index,
        price_units=price_units,
        optimizer=trial.suggest_categorical("optimizer", list(space["optimizers"])),
        lr=trial.suggest_float("lr", lo_lr, hi_lr, log=True),
        batch_size=trial.suggest_categorical("batch_size", [int(b) for b in space["batch_sizes"]]),
    )
    return {**hp, **suggest_training(trial, space)}


def suggest_training(trial: optuna.Trial, space: Mapping[str, Any]) -> dict[str, Any]:
    """Weight decay, loss and learning-rate schedule: sampled only when ``space`` gives a choice."""
    out: dict[str, Any] = {}
    if space.get("weight_decay") is not None:
        lo_wd, hi_wd = (float(v) for v in space["weight_decay"])
        if not 0 < lo_wd <= hi_wd:
            raise DataValidationError(f"weight_decay range must be 0 < lo <= hi, got {[lo_wd, hi_wd]}")
        out["weight_decay"] = (
            lo_wd if lo_wd == hi_wd else trial.suggest_float("weight_decay", lo_wd, hi_wd, log=True)
        )
    losses = space.get("loss", TRAINING_DEFAULTS["loss"])
    losses = [losses] if isinstance(losses, str) else list(losses)
    for name in losses:
        if name not in LOSSES:
            raise DataValidationError(f"unknown loss {name!r} in the search space; choose from {list(LOSSES)}")
    out["loss"] = losses[0] if len(losses) == 1 else trial.suggest_categorical("loss", losses)
    if out["loss"] == "huber":
        out["huber_delta"] = float(space.get("huber_delta", TRAINING_DEFAULTS["huber_delta"]))
    plateau = space.get("lr_plateau_patience", TRAINING_DEFAULTS["lr_plateau_patience"])
    if plateau is not None:
        out["lr_plateau_patience"] = int(plateau)
    return out


def training_kwargs(hp: Mapping[str, Any]) -> dict[str, Any]:
    """The ``train_model`` keyword arguments an ``hparams`` dict describes."""
    keys = ("optimizer", "lr", "batch_size", "weight_decay", "loss", "huber_delta", "lr_plateau_patience")
    return {k: hp[k] for k in keys if k in hp}


def tune(
    x_train,
    y_train,
    x_val,
    y_val,
    *,
    seed: int,
    n_trials: int,
    num_epochs: int,
    patience: int,
    timeout: float | None = None,
    space: Mapping[str, Any] | None = None,
    pruner_startup_trials: int = 5,
    pruner_warmup_epochs: int = 10,
    threads: int | None = 1,
    progress: Callable[[str], None] | None = None,
    ensemble_size: int = 1,
    price_index: Sequence[int] | None = None,
) -> TuningResult:
    """Search ``space`` for ``n_trials`` trials; return the best trial's trained network, or
    with ``ensemble_size`` k > 1 the mean of the k best trials' networks (each at its best
    epoch; chosen by validation MSE, like the single best).

    ``price_index``: positions of the list-price features; every trial's network is then
    non-increasing in them (``PriceMonotoneNet``). ``None``: plain networks."""
    if int(ensemble_size) < 1:
        raise DataValidationError(f"ensemble_size must be >= 1, got {ensemble_size}")
    space = {**DEFAULT_SPACE, **(space or {})}
    x_train = np.asarray(x_train, dtype=np.float32)
    x_val = np.asarray(x_val, dtype=np.float32)
    n_features = x_train.shape[1]
    if x_val.shape[1] != n_features:
        raise DataValidationError(
            f"train has {n_features} features, validation {x_val.shape[1]}"
        )
    for name, arr in (("train", x_train), ("validation", x_val)):
        if not np.isfinite(arr).all():
            raise DataValidationError(f"{name} features contain NaN or infinite values")

    # the network bounds its inputs to the train range (see InputRange); validate on that too
    x_val = np.clip(x_val, x_train.min(axis=0), x_train.max(axis=0))

    sampler = optuna.samplers.TPESampler(seed=int(seed))
    pruner = optuna.pruners.MedianPruner(
        n_startup_trials=int(pruner_startup_trials), n_warmup_steps=int(pruner_warmup_epochs)
    )
    study = optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner)
    best: dict[str, Any] = {}
    top: list[dict[str, Any]] = []  # the ensemble_size best trials, best first
    history: list[dict[str, Any]] = []
    started = time.perf_counter()

    def objective(trial: optuna.Trial) -> float:
        hp = suggest_hparams(trial, n_features, space, price_index)
        trial_seed = int(seed) + trial.number
        seed_everything(trial_seed, threads)
        model = build_model(hp)
        model.set_input_range(x_train)

        def report(epoch: int, val_loss: float) -> None:
            trial.report(val_loss, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        result = train_model(
            model, x_train, y_train, x_val, y_val,
            num_epochs=num_epochs, patience=patience, seed=trial_seed, on_epoch=report,
            **training_kwargs(hp),
        )
        trial.set_user_attr("best_epoch", result.best_epoch)
        trial.set_user_attr("epochs_run", result.epochs_run)
        if not np.isfinite(result.best_val_loss):
            raise optuna.TrialPruned()  # diverged: no usable weights
        entry = dict(
            value=result.best_val_loss, trial=trial.number, model=model,
            hparams={**hp, "seed": trial_seed, "best_epoch": result.best_epoch,
                     "epochs_run": result.epochs_run},
        )
        if not best or result.best_val_loss < best["value"]:
            best.update(entry)
        top.append(entry)
        top.sort(key=lambda e: (e["value"], e["trial"]))
        del top[int(ensemble_size):]
        return result.best_val_loss

    def record(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        value = trial.value
        if value is None and trial.intermediate_values:
            value = trial.intermediate_values[max(trial.intermediate_values)]
        best_value = best.get("value")
        history.append({
            "trial": trial.number,
            "state": trial.state.name,
            "val_mse": None if value is None else float(value),
            "best_val_mse": None if best_value is None else float(best_value),
            "epochs_run": len(trial.intermediate_values),
            **{k: v for k, v in trial.params.items()},
        })
        if progress is not None:
            shown = "n/a" if value is None else f"{value:.4f}"
            best_shown = "n/a" if best_value is None else f"{best_value:.4f} (#{best['trial']})"
            progress(
                f"trial {trial.number + 1}/{n_trials} {trial.state.name.lower():8s} "
                f"val_mse={shown} best={best_shown} epochs={len(trial.intermediate_values)} "
                f"layers={trial.params.get('n_layers')} opt={trial.params.get('optimizer')} "
                f"lr={trial.params.get('lr', float('nan')):.2e} bs={trial.params.get('batch_size')} "
                f"[{time.perf_counter() - started:.1f}s]"
            )

    study.optimize(
        objective, n_trials=int(n_trials), timeout=timeout, callbacks=[record],
        catch=(), gc_after_trial=False,
    )
    if not best:
        raise DataValidationError(
            "no tuning trial finished with a finite validation loss; widen the budget or the space"
        )
    states = [t.state for t in study.trials]
    model, hparams, value = best["model"], best["hparams"], float(best["value"])
    if len(top) > 1:
        model = DemandEnsemble([e["model"] for e in top]).eval()
        hparams = ensemble_hparams([e["hparams"] for e in top])
        value = float(np.mean((model.predict_log(x_val) - np.asarray(y_val, dtype=np.float64).reshape(-1)) ** 2))
    return TuningResult(
        model=model,
        hparams=hparams,
        best_value=value,
        best_trial=int(best["trial"]),
        ensemble_trials=[int(e["trial"]) for e in top],
        history=history,
        n_complete=states.count(optuna.trial.TrialState.COMPLETE),
        n_pruned=states.count(optuna.trial.TrialState.PRUNED),
        n_failed=states.count(optuna.trial.TrialState.FAIL),
        stopped_by_timeout=len(study.trials) < int(n_trials),
        seconds=time.perf_counter() - started,
    )
