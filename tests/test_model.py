"""The demand network: shapes, configuration, input clipping, safe and byte-stable checkpoints."""
import hashlib
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
    PriceMonotoneNet,
    build_model,
    checkpoint_bytes,
    hparams_of,
    load_checkpoint,
)
from pricing.registry import make_record
from pricing.versions import model_version


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
    md5 = hashlib.md5(data).hexdigest()
    version = model_version(md5)
    assert len(version) == 12 and md5.startswith(version)  # the hash DVC stores the checkpoint under
    # The metrics' spelling is the record's (and so the API's and the page's).
    record = make_record(stockcode="SC1", decision="approved", model_path="m.pth", git={}, metrics={}, verdicts={},
                         stages={"tune": {"outs": [{"path": "m.pth", "md5": md5}]}}, platform_info={})
    assert record.model_version == version


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


def monotone_net(seed=0, batch_norm=True, perturb=3.0):
    torch.manual_seed(seed)
    hp = hparams_of(5, [8, 6], [0.1, 0.0], batch_norm, price_index=[1, 3], price_units=6)
    model = build_model(hp)
    with torch.no_grad():  # far from the initial state: big weights of any sign
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * perturb)
    return model.eval(), hp


@pytest.mark.parametrize("seed", range(5))
def test_price_monotone_net_never_rises_with_the_price_features(seed):
    model, hp = monotone_net(seed)
    assert isinstance(model, PriceMonotoneNet) and hp["architecture"] == "price_monotone"
    rng = np.random.default_rng(seed)
    contexts = rng.normal(size=(200, 5)) * 2
    grid = np.linspace(-4, 4, 41)
    for column in (1, 3):
        x = np.repeat(contexts[:, None, :], len(grid), axis=1)
        x[:, :, column] = grid
        curves = model.predict_log(x.reshape(-1, 5)).reshape(len(contexts), len(grid))
        assert (np.diff(curves, axis=1) <= 1e-6).all()
    # the price path is additive on the log scale: every context moves by the same amount
    a, b = contexts.copy(), contexts.copy()
    a[:, 1], b[:, 1] = -1.0, 1.0
    a[:, 3] = b[:, 3] = 0.5
    shift = model.predict_log(b) - model.predict_log(a)
    assert np.allclose(shift, shift[0], atol=1e-3) and shift[0] <= 0  # float32 sums of big weights


def test_a_plain_net_can_rise_with_price_which_the_monotone_one_cannot():
    torch.manual_seed(0)
    plain = build_model(hparams_of(2, [4], [0.0], False)).eval()
    assert plain.net[0].in_features == 2
    with torch.no_grad():
        for parameter in plain.parameters():
            parameter.zero_()
        plain.net[0].weight[0, 0] = 1.0
        plain.net[2].weight[0, 0] = 1.0
    assert plain.predict_log(np.array([[2.0, 0.0]]))[0] > plain.predict_log(np.array([[1.0, 0.0]]))[0]


def test_bad_price_paths_are_refused():
    for index in ([], [0, 0], [5], [0, 1, 2, 3, 4]):
        with pytest.raises(DataValidationError):
            PriceMonotoneNet(5, index, [4])


def test_monotone_checkpoint_round_trip_and_deep_shap():
    from pricing.explain import explain

    model, hp = monotone_net(1, perturb=0.3)
    model.set_input_range(np.random.default_rng(0).normal(size=(20, 5)))
    data = checkpoint_bytes(model, hp, list("abcde"), "f" * 32, "SC1")
    loaded, _ = load_checkpoint(io.BytesIO(data))
    x = np.random.default_rng(1).normal(size=(9, 5)) * 3
    assert np.array_equal(loaded.predict_log(x), model.predict_log(x))
    rng = np.random.default_rng(0)
    result = explain(loaded, rng.normal(size=(30, 5)), rng.normal(size=(10, 5)), list("abcde"),
                     seed=0, background_size=20)
    assert result.max_additivity_error < 1e-4


def test_the_numpy_forward_equals_the_torch_network():
    from pricing.model import portable_network
    from pricing.portable import forward_log

    monotone = [monotone_net(seed, batch_norm=bool(seed % 2), perturb=0.3)[0] for seed in range(2)]
    torch.manual_seed(5)
    plain = build_model(hparams_of(5, [7], [0.2], True)).eval()
    for model in (monotone[0], DemandEnsemble([*monotone, plain]).eval()):
        model.set_input_range(np.random.default_rng(0).normal(size=(50, 5)))
        spec, arrays = portable_network(model, list("abcde"))
        x = np.random.default_rng(2).normal(size=(300, 5)) * 2
        assert np.abs(forward_log(spec, arrays, x) - model.predict_log(x)).max() < 1e-6


def test_a_demand_curve_in_numpy_runs_each_lines_context_once_and_predicts_every_row_alike():
    from pricing.model import portable_network
    from pricing.portable import PORTABLE_FORMAT, PortableModel

    monotone = [monotone_net(seed, batch_norm=bool(seed % 2), perturb=0.3)[0] for seed in range(2)]
    torch.manual_seed(5)
    plain = build_model(hparams_of(5, [7], [0.2], True)).eval()
    names = list("abcde")
    for model in (DemandEnsemble(monotone).eval(), DemandEnsemble([*monotone, plain]).eval()):
        model.set_input_range(np.random.default_rng(0).normal(size=(50, 5)))
        network, arrays = portable_network(model, names)
        transformer = {"raw_features": names, "output_features": names, "branches": [
            {"kind": "scale", "log1p": False, "columns": names, "mean": [0.5] * 5, "scale": [2.0] * 5}]}
        portable = PortableModel({"format": PORTABLE_FORMAT, "network": network, "transformer": transformer}, arrays)
        lines = np.random.default_rng(3).normal(size=(20, 5))
        price_columns = ["b", "d"]  # the monotone nets' price inputs (price_index [1, 3])
        prices = np.random.default_rng(4).normal(size=(7, 20, 2))  # each line at 7 prices
        rows = np.repeat(lines[None], 7, axis=0)
        rows[:, :, [1, 3]] = prices
        every_row = portable.predict(rows.reshape(-1, 5)).reshape(7, 20).T
        np.testing.assert_allclose(portable.predict_over_prices(lines, price_columns, prices), every_row, rtol=1e-5)
