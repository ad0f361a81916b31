"""The demand network: shapes, configuration, input clipping, safe and byte-stable checkpoints."""
import io

import numpy as np
import pytest
import torch
from torch import nn

from pricing.errors import DataValidationError
from pricing.model import (
    DemandEnsemble,
    ensemble_hparams,
    DemandNet,
    build_model,
    checkpoint_bytes,
    hparams_of,
    load_checkpoint,
    model_version,
)


def count(model, kind):
    return sum(isinstance(m, kind) for m in model.modules())


def test_shapes_depth_width_dropout_batchnorm():
    model = DemandNet(5, [8, 4, 3], [0.1, 0.0, 0.2], batch_norm=True)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(5, 8), (8, 4), (4, 3), (3, 1)]
    assert count(model, nn.BatchNorm1d) == 3
    assert count(model, nn.Dropout) == 2  # a rate of 0 adds no layer
    model.eval()
    assert model(torch.zeros(7, 5)).shape == (7, 1)
    assert model.predict_log(np.zeros((7, 5))).shape == (7,)

    plain = DemandNet(5, [16], 0.0, batch_norm=False)
    assert count(plain, nn.BatchNorm1d) == 0 and count(plain, nn.Dropout) == 0
    assert count(plain, nn.Linear) == 2


@pytest.mark.parametrize(
    "args",
    [dict(n_features=0, hidden_units=[4]), dict(n_features=3, hidden_units=[4, 4], dropouts=[0.1]),
     dict(n_features=3, hidden_units=[4], dropouts=[1.0]), dict(n_features=3, hidden_units=[0])],
)
def test_bad_configurations_are_refused(args):
    with pytest.raises(DataValidationError):
        DemandNet(**args)


def test_inputs_are_clipped_to_the_training_range():
    torch.manual_seed(0)
    model = DemandNet(2, [8]).eval()
    model.set_input_range(np.array([[0.0, -1.0], [1.0, 1.0]]))
    far = model.predict_log(np.array([[50.0, -40.0]]))
    edge = model.predict_log(np.array([[1.0, -1.0]]))
    assert far == pytest.approx(edge)
    inside = np.array([[0.3, 0.2]])
    assert model.predict_log(inside) == pytest.approx(model(torch.tensor(inside, dtype=torch.float32)).item())


def make_checkpoint(seed=0):
    torch.manual_seed(seed)
    hp = hparams_of(3, [6, 4], [0.1, 0.2], True, optimizer="adam", lr=1e-3, batch_size=16)
    model = build_model(hp)
    model.set_input_range(np.random.default_rng(0).normal(size=(20, 3)))
    model.eval()
    return model, hp, checkpoint_bytes(model, hp, ["a", "b", "c"], "f" * 32, "SC1")


def test_checkpoint_round_trip_is_weights_only_and_byte_stable():
    model, hp, data = make_checkpoint()
    assert data == make_checkpoint()[2]  # same weights → same bytes
    assert data != make_checkpoint(seed=1)[2]
    raw = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    assert raw["feature_names"] == ["a", "b", "c"] and raw["transformer_md5"] == "f" * 32
    assert raw["hparams"] == hp
    loaded, payload = load_checkpoint(io.BytesIO(data))
    x = np.random.default_rng(1).normal(size=(9, 3)) * 5
    assert np.array_equal(loaded.predict_log(x), model.predict_log(x))
    assert torch.equal(loaded.input_max, model.input_max)
    assert model_version(data, "SC1") == model_version(data, "SC1")
    assert model_version(data, "SC1").startswith("dfn-SC1-")


def test_checkpoint_refuses_mismatched_names_and_foreign_files(tmp_path):
    model, hp, _ = make_checkpoint()
    with pytest.raises(DataValidationError):
        checkpoint_bytes(model, hp, ["a", "b"], "x", "SC1")
    foreign = tmp_path / "foreign.pth"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(DataValidationError):
        load_checkpoint(foreign)


def make_ensemble_checkpoint():
    members = []
    for seed in range(3):
        torch.manual_seed(seed)
        hp = hparams_of(3, [4 + seed], [0.0], seed == 1, optimizer="adam", lr=1e-3, batch_size=16)
        members.append((build_model(hp), hp))
    ensemble = DemandEnsemble([m for m, _ in members])
    ensemble.set_input_range(np.random.default_rng(0).normal(size=(20, 3)))
    ensemble.eval()
    hp = ensemble_hparams([h for _, h in members])
    return ensemble, members, hp, checkpoint_bytes(ensemble, hp, ["a", "b", "c"], "f" * 32, "SC1")


def test_ensemble_is_the_mean_of_its_members_and_clips_inputs():
    ensemble, members, hp, _ = make_ensemble_checkpoint()
    x = torch.randn(7, 3)
    for model, _ in members:
        model.eval()
    expected = torch.stack([m(x) for m, _ in members]).mean(dim=0)
    assert ensemble(x).shape == (7, 1)
    assert torch.allclose(ensemble(x), expected)
    far = ensemble.predict_log(np.array([[50.0, -40.0, 9.0]]))
    edge = ensemble.predict_log(np.minimum(np.maximum([[50.0, -40.0, 9.0]], ensemble.input_min.numpy()),
                                           ensemble.input_max.numpy()))
    assert far == pytest.approx(edge)
    # the best member's keys stay at the top level for readers of a single network's hparams
    assert hp["hidden_units"] == [4] and hp["optimizer"] == "adam" and len(hp["ensemble"]) == 3


def test_ensemble_checkpoint_round_trip_is_weights_only():
    ensemble, _, hp, data = make_ensemble_checkpoint()
    assert data == make_ensemble_checkpoint()[3]
    raw = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    assert raw["hparams"] == hp
    loaded, _ = load_checkpoint(io.BytesIO(data))
    assert isinstance(loaded, DemandEnsemble) and len(loaded.members) == 3
    x = np.random.default_rng(1).normal(size=(9, 3)) * 5
    assert np.array_equal(loaded.predict_log(x), ensemble.predict_log(x))


def test_deep_shap_explains_an_ensemble_additively():
    from pricing.explain import explain

    ensemble, *_ = make_ensemble_checkpoint()
    rng = np.random.default_rng(0)
    result = explain(ensemble, rng.normal(size=(30, 3)), rng.normal(size=(10, 3)), ["a", "b", "c"],
                     seed=0, background_size=20)
    assert result.max_additivity_error < 1e-4
