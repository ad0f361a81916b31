"""Training loop: it learns, early stopping restores the best epoch, seeds make it repeatable."""
import copy

import numpy as np
import pytest
import torch

from pricing.errors import DataValidationError
from pricing.model import DemandNet
from pricing.training import OPTIMIZERS, evaluate_loss, seed_everything, train_model


def toy(n=256, seed=0, slope=1.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = slope * (2 * x[:, 0] - x[:, 1]) + 0.05 * rng.normal(size=n)
    return x, y.astype(np.float32)


def fresh(seed=0, **kwargs):
    seed_everything(seed)
    return DemandNet(3, [16], 0.0, **kwargs)


def test_learnable_toy_problem_drives_the_loss_down():
    x, y = toy()
    xv, yv = toy(seed=1)
    model = fresh()
    before = evaluate_loss(model, torch.tensor(xv), torch.tensor(yv))
    result = train_model(model, x, y, xv, yv, optimizer="adam", lr=1e-2, batch_size=32,
                         num_epochs=30, patience=None, seed=0)
    assert result.val_losses[-1] < 0.05 * before
    assert result.train_losses[-1] < result.train_losses[0]
    assert result.epochs_run == 30


def test_early_stopping_restores_the_best_epochs_weights():
    # validation wants half the training slope: its loss falls, then rises as training converges
    x, y = toy()
    xv, yv = toy(seed=1, slope=0.5)
    model = fresh()
    snapshots = []
    result = train_model(
        model, x, y, xv, yv, optimizer="adam", lr=1e-2, batch_size=32, num_epochs=200, patience=3,
        seed=0, on_epoch=lambda epoch, loss: snapshots.append(copy.deepcopy(model.state_dict())),
    )
    assert 0 < result.best_epoch < result.epochs_run - 1, "the scenario must overshoot its best epoch"
    assert result.epochs_run == result.best_epoch + 3 + 1  # stopped after `patience` worse epochs
    assert result.best_val_loss == min(result.val_losses)
    assert result.val_losses.index(result.best_val_loss) == result.best_epoch
    best = snapshots[result.best_epoch]
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, best[name]), name
    assert not torch.equal(model.state_dict()["net.0.weight"], snapshots[-1]["net.0.weight"])
    assert evaluate_loss(model, torch.tensor(xv), torch.tensor(yv)) == pytest.approx(result.best_val_loss)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_same_seed_gives_identical_weights(batch_norm):
    x, y = toy()
    xv, yv = toy(seed=1)

    def run(seed):
        seed_everything(seed)
        model = DemandNet(3, [8, 8], [0.2, 0.1], batch_norm=batch_norm)
        train_model(model, x, y, xv, yv, optimizer="adamw", lr=5e-3, batch_size=16,
                    num_epochs=5, patience=None, seed=seed)
        return model.state_dict()

    first, second, other = run(7), run(7), run(8)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_trains(name):
    x, y = toy(n=64)
    model = fresh()
    result = train_model(model, x, y, x, y, optimizer=name, lr=1e-2, batch_size=16, num_epochs=3,
                         patience=None, seed=0)
    assert result.best_val_loss < result.val_losses[0] or result.best_epoch == 0
    assert np.isfinite(result.best_val_loss)


def test_bad_inputs_are_refused():
    x, y = toy(n=16)
    with pytest.raises(DataValidationError):
        train_model(fresh(), x, y, x, y, optimizer="lbfgs")
    with pytest.raises(DataValidationError):
        train_model(fresh(), x, y[:-1], x, y)


def test_weight_decay_shrinks_the_weights():
    x, y = toy()

    def norm(weight_decay):
        model = fresh()
        train_model(model, x, y, x, y, optimizer="adamw", lr=1e-2, batch_size=32, num_epochs=20,
                    patience=None, seed=0, weight_decay=weight_decay)
        return float(sum((p.detach() ** 2).sum() for name, p in model.named_parameters() if "weight" in name))

    assert norm(1.0) < 0.8 * norm(0.0)
    with pytest.raises(DataValidationError):
        train_model(fresh(), x, y, x, y, weight_decay=-1.0)


def test_huber_loss_learns_and_resists_outliers():
    x, y = toy()
    xv, yv = toy(seed=1)
    y_out = y.copy()
    y_out[:8] += 50.0  # a few absurd quantities
    losses = {}
    for loss in ("mse", "huber"):
        model = fresh()
        result = train_model(model, x, y_out, xv, yv, optimizer="adam", lr=1e-2, batch_size=32,
                             num_epochs=40, patience=None, seed=0, loss=loss, huber_delta=1.0)
        losses[loss] = result.best_val_loss  # early stopping and the val loss stay MSE
    assert losses["huber"] < losses["mse"]
    with pytest.raises(DataValidationError):
        train_model(fresh(), x, y, x, y, loss="mae")


def test_plateau_schedule_lowers_the_learning_rate():
    x, y = toy(n=64)
    xv, yv = toy(n=64, seed=1, slope=0.5)  # val loss rises once training converges
    model = fresh()
    seen = []
    original = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    torch.optim.Adam.step = spy
    try:
        train_model(model, x, y, xv, yv, optimizer="adam", lr=1e-2, batch_size=64, num_epochs=40,
                    patience=None, seed=0, lr_plateau_patience=2)
    finally:
        torch.optim.Adam.step = original
    assert seen[0] == pytest.approx(1e-2) and min(seen) < 1e-2
