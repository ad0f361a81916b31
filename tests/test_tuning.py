"""Optuna search: seeded and repeatable, one history row and progress line per trial, best kept."""
import numpy as np
import optuna
import pytest
import torch

from pricing.errors import DataValidationError
from pricing.tuning import DEFAULT_SPACE, suggest_hparams, tune

TINY = dict(n_trials=4, num_epochs=4, patience=2, pruner_startup_trials=2, pruner_warmup_epochs=1,
            space={"n_units": [4, 16], "batch_sizes": [32, 64]})


def toy(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return x, (x[:, 0] - 0.5 * x[:, 2] + 0.1 * rng.normal(size=n)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    return (*toy(160, 0), *toy(60, 1))


def test_same_seed_same_search_and_weights(data):
    lines = []
    first = tune(*data, seed=3, progress=lines.append, **TINY)
    second = tune(*data, seed=3, **TINY)
    assert first.hparams == second.hparams and first.best_trial == second.best_trial
    a, b = first.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len(first.history) == len(lines) == TINY["n_trials"]
    assert all(line.startswith(f"trial {i + 1}/{TINY['n_trials']} ") for i, line in enumerate(lines))
    other = tune(*data, seed=4, **TINY)
    assert [row["lr"] for row in other.history] != [row["lr"] for row in first.history]


def test_the_returned_model_is_the_best_trial_at_its_best_epoch(data):
    result = tune(*data, seed=0, **TINY)
    complete = [row for row in result.history if row["state"] == "COMPLETE"]
    assert result.best_value == pytest.approx(min(row["val_mse"] for row in complete))
    assert result.history[result.best_trial]["val_mse"] == pytest.approx(result.best_value)
    # predict_log clips inputs to the train range, as the search did when scoring
    val_mse = np.mean((result.model.predict_log(data[2]) - data[3]) ** 2)
    assert val_mse == pytest.approx(result.best_value, rel=1e-5)
    assert result.n_complete + result.n_pruned + result.n_failed == TINY["n_trials"]
    assert not result.stopped_by_timeout
    assert result.hparams["n_features"] == 4 and "seed" in result.hparams
    assert [row["best_val_mse"] for row in complete] == sorted(
        (row["best_val_mse"] for row in complete), reverse=True)


def test_the_space_covers_the_tutorials_choices():
    seen = set()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(60):
        trial = study.ask()
        hp = suggest_hparams(trial, 3, DEFAULT_SPACE)
        assert 1 <= len(hp["hidden_units"]) <= 3 and len(hp["dropouts"]) == len(hp["hidden_units"])
        assert 1e-4 <= hp["lr"] <= 1e-2 and hp["batch_size"] in DEFAULT_SPACE["batch_sizes"]
        seen.add(hp["optimizer"])
        study.tell(trial, 0.0)
    assert seen == {"adam", "adamw", "rmsprop", "sgd", "adamax", "radam"}


def test_bad_input_is_refused(data):
    x, y, xv, yv = data
    with pytest.raises(DataValidationError):
        tune(x, y, xv[:, :3], yv, seed=0, **TINY)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataValidationError):
        tune(bad, y, xv, yv, seed=0, **TINY)
    with pytest.raises(DataValidationError):
        tune(x, y, xv, yv, seed=0, **{**TINY, "space": {"optimizers": ["lbfgs"]}})


def test_ensemble_averages_the_k_best_trials(data):
    single = tune(*data, seed=0, **TINY)
    result = tune(*data, seed=0, ensemble_size=3, **TINY)
    complete = sorted((row["val_mse"], row["trial"]) for row in result.history if row["state"] == "COMPLETE")
    assert result.ensemble_trials == [trial for _, trial in complete[:3]]
    assert result.best_trial == single.best_trial == result.ensemble_trials[0]
    assert len(result.model.members) == len(result.ensemble_trials)
    assert result.hparams["hidden_units"] == single.hparams["hidden_units"]
    assert [m["seed"] for m in result.hparams["ensemble"]] == result.ensemble_trials  # seed 0 + trial
    val_mse = np.mean((result.model.predict_log(data[2]) - data[3]) ** 2)
    assert val_mse == pytest.approx(result.best_value, rel=1e-5)
    with pytest.raises(DataValidationError):
        tune(*data, seed=0, ensemble_size=0, **TINY)


def test_training_choices_are_sampled_only_when_the_space_offers_them(data):
    plain = tune(*data, seed=0, **TINY)
    assert not {"weight_decay", "loss"} & set(plain.history[0])
    assert plain.hparams["loss"] == "mse" and "weight_decay" not in plain.hparams
    space = {**TINY["space"], "weight_decay": [1e-5, 1e-2], "loss": ["mse", "huber"], "huber_delta": 0.5,
             "lr_plateau_patience": 2}
    result = tune(*data, seed=0, **{**TINY, "space": space})
    assert all(1e-5 <= row["weight_decay"] <= 1e-2 and row["loss"] in ("mse", "huber") for row in result.history)
    assert result.hparams["lr_plateau_patience"] == 2
    assert result.hparams.get("huber_delta", 0.5) == 0.5
    with pytest.raises(DataValidationError):
        tune(*data, seed=0, **{**TINY, "space": {**space, "loss": ["mae"]}})


def test_with_price_positions_every_trial_is_price_monotone_and_the_tutorial_knobs_stay(data):
    result = tune(*data, seed=0, price_index=[2], ensemble_size=2, **TINY)
    assert {"n_layers", "lr", "optimizer", "batch_size", "batch_norm", "price_units"} <= set(result.history[0])
    members = result.hparams["ensemble"]
    assert all(m["architecture"] == "price_monotone" and m["price_index"] == [2] for m in members)
    x = np.repeat(data[2][:20], 31, axis=0)
    x[:, 2] = np.tile(np.linspace(-3, 3, 31), 20)
    curves = result.model.predict_log(x).reshape(20, 31)
    assert (np.diff(curves, axis=1) <= 1e-6).all()
    # the toy target falls with column 2: the learnt price effect is a real fall, not flat
    assert (curves[:, 0] - curves[:, -1]).mean() > 0.5
