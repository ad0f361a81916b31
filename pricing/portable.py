"""The approved model in a plain, non-executable form, and its forward pass in NumPy.

What the price API needs to predict without torch, sklearn or unpickling anything:

- ``<model>.npz``: every array (the networks' weights as the network uses them, the input
  range), read with ``allow_pickle=False``;
- ``<model>.json``: the layer plan of each ensemble member, the feature transformer's fitted
  parameters (scaling, log1p columns, one-hot categories) and the raw feature order.

``PortableModel.predict(raw_features)`` maps engineered features (the raw split's columns,
``raw_features`` order) to units, which is the ``predict`` callable ``pricing.demand``
expects. Computation is float32 like the torch network (same weights, same formula), so
the two agree to float rounding. This module imports neither torch nor sklearn; the torch
side of the export is ``pricing.model.portable_network``.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pricing.errors import DataValidationError

PORTABLE_FORMAT = 1


def transformer_spec(transformer: Any) -> dict[str, Any]:
    """The fitted parameters of ``pricing.transform.build_transformer``'s ColumnTransformer."""
    branches = []
    for name, pipeline, columns in transformer.transformers_:
        if name == "remainder" or len(columns) == 0:
            continue
        steps = dict(pipeline.named_steps)
        if "onehot" in steps:
            categories = [[int(v) for v in values] for values in steps["onehot"].categories_]
            branches.append({"kind": "onehot", "columns": list(columns), "categories": categories})
            continue
        scaler = steps["scale"]
        branches.append({
            "kind": "scale", "log1p": "log1p" in steps, "columns": list(columns),
            "mean": [float(v) for v in scaler.mean_], "scale": [float(v) for v in scaler.scale_],
        })
    return {
        "raw_features": [c for b in branches for c in b["columns"]],
        "output_features": [str(n) for n in transformer.get_feature_names_out()],
        "branches": branches,
    }


def transform(spec: Mapping[str, Any], raw: np.ndarray, raw_features: Sequence[str]) -> np.ndarray:
    """Model input (float64, ``output_features`` order) from engineered features ``raw``."""
    raw = np.asarray(raw, dtype=np.float64)
    position = {name: i for i, name in enumerate(raw_features)}
    missing = [c for b in spec["branches"] for c in b["columns"] if c not in position]
    if missing:
        raise DataValidationError(f"missing raw feature(s) {', '.join(missing)}")
    parts = []
    for branch in spec["branches"]:
        values = raw[:, [position[c] for c in branch["columns"]]]
        if branch["kind"] == "scale":
            if branch["log1p"]:
                if (values < 0).any():
                    raise DataValidationError("log-scaled feature(s) with negative values")
                values = np.log1p(values)
            parts.append((values - np.asarray(branch["mean"])) / np.asarray(branch["scale"]))
        else:
            for j, categories in enumerate(branch["categories"]):
                column = values[:, j]
                parts.append(np.stack([(column == c).astype(np.float64) for c in categories], axis=1))
    out = np.concatenate(parts, axis=1)
    if out.shape[1] != len(spec["output_features"]):
        raise DataValidationError(f"transformer spec gives {out.shape[1]} columns, expected "
                                  f"{len(spec['output_features'])}")
    return out


def _forward_layers(plan: Sequence[Mapping[str, Any]], arrays: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    for layer in plan:
        kind, key = layer["kind"], layer.get("key")
        if kind == "linear":
            x = x @ arrays[f"{key}.weight"].T + arrays[f"{key}.bias"]
        elif kind == "batch_norm":
            eps = np.float32(layer["eps"])
            x = (x - arrays[f"{key}.running_mean"]) / np.sqrt(arrays[f"{key}.running_var"] + eps)
            x = x * arrays[f"{key}.weight"] + arrays[f"{key}.bias"]
        elif kind == "relu":
            x = np.maximum(x, np.float32(0))
        else:
            raise DataValidationError(f"unknown layer kind {kind!r} in the portable model")
    return x


def _clip(arrays: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return np.minimum(np.maximum(x, arrays["input_min"]), arrays["input_max"])


def forward_log(spec: Mapping[str, Any], arrays: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """``log1p(quantity)`` predictions for model input ``x`` (clipped to the train range)."""
    x = _clip(arrays, x)
    outputs = []
    for member in spec["members"]:
        if member["architecture"] == "plain":
            outputs.append(_forward_layers(member["layers"], arrays, x))
            continue
        context = _forward_layers(member["layers"], arrays, x[:, member["context_index"]])
        outputs.append(context + _price_path(member, arrays, x[:, member["price_index"]]))
    return np.mean(np.stack(outputs), axis=0, dtype=np.float32).reshape(-1).astype(np.float64)


def _price_path(member: Mapping[str, Any], arrays: Mapping[str, np.ndarray], z: np.ndarray) -> np.ndarray:
    """The non-increasing price path of a price-monotone member, on its price inputs ``z``."""
    key = member["key"]
    hidden = np.maximum(z @ arrays[f"{key}.price.hidden_weight"].T + arrays[f"{key}.price.hidden_bias"],
                        np.float32(0))
    return -(z @ arrays[f"{key}.price.linear"].T + hidden @ arrays[f"{key}.price.out"].T)


def transform_columns(spec: Mapping[str, Any], raw: np.ndarray, columns: Sequence[str]) -> tuple[list[int], np.ndarray]:
    """Model-input positions and values of the scaled raw ``columns`` alone (``raw`` in that
    order), as ``transform`` computes them: it works column by column."""
    raw = np.asarray(raw, dtype=np.float64)
    positions, values, offset = [], [], 0
    for branch in spec["branches"]:
        for j, name in enumerate(branch["columns"]):
            if name not in columns:
                continue
            if branch["kind"] != "scale":
                raise DataValidationError(f"{name} is one-hot encoded: it cannot be transformed alone")
            column = raw[:, list(columns).index(name)]
            if branch["log1p"]:
                if (column < 0).any():
                    raise DataValidationError("log-scaled feature(s) with negative values")
                column = np.log1p(column)
            positions.append(offset + j)
            values.append((column - branch["mean"][j]) / branch["scale"][j])
        offset += len(branch["columns"]) if branch["kind"] == "scale" else sum(map(len, branch["categories"]))
    missing = sorted(set(columns) - {c for b in spec["branches"] for c in b["columns"]})
    if missing:
        raise DataValidationError(f"missing raw feature(s) {', '.join(missing)}")
    return positions, np.stack(values, axis=1)


class PortableModel:
    """The exported network and transformer; ``predict`` suits ``pricing.demand``."""

    def __init__(self, spec: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        if spec.get("format") != PORTABLE_FORMAT:
            raise DataValidationError(f"not a portable demand model of format {PORTABLE_FORMAT}")
        self.spec = dict(spec)
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}

    @property
    def raw_features(self) -> list[str]:
        return list(self.spec["transformer"]["raw_features"])

    def model_input(self, raw: np.ndarray) -> np.ndarray:
        return transform(self.spec["transformer"], raw, self.raw_features)

    def predict_log(self, model_input: np.ndarray) -> np.ndarray:
        return forward_log(self.spec["network"], self.arrays, model_input)

    def predict(self, raw: np.ndarray) -> np.ndarray:
        """Units per line for engineered features ``raw`` (``raw_features`` order)."""
        return np.expm1(np.clip(self.predict_log(self.model_input(raw)), 0.0, None))

    def predict_over_prices(self, lines: np.ndarray, price_columns: Sequence[str], prices: np.ndarray) -> np.ndarray:
        """Units of each line at each price, ``(lines, prices)``: ``lines`` are engineered
        features (``raw_features`` order), ``prices[j, i]`` the raw ``price_columns`` of line
        ``i`` at the ``j``-th price; every other feature stays the line's. Equal to ``predict``
        on every repriced row, but a price-monotone member's context path, which never reads
        a price column, runs once per line: a demand curve at the cost of its price paths."""
        n_prices, n_lines, _ = prices.shape
        base = _clip(self.arrays, self.model_input(lines))
        positions, values = transform_columns(self.spec["transformer"], prices.reshape(n_prices * n_lines, -1),
                                              price_columns)
        values = _clip({k: self.arrays[k][positions] for k in ("input_min", "input_max")}, values)
        line_of_row = np.tile(np.arange(n_lines), n_prices)
        outputs = []
        for member in self.spec["network"]["members"]:
            if member["architecture"] == "plain" or set(member["context_index"]) & set(positions):
                rows = base[line_of_row]
                rows[:, positions] = values
                outputs.append(forward_log({"members": [member]}, self.arrays, rows).astype(np.float32)[:, None])
                continue
            z = base[:, member["price_index"]][line_of_row]
            for k, position in enumerate(member["price_index"]):
                if position in positions:
                    z[:, k] = values[:, positions.index(position)]
            context = _forward_layers(member["layers"], self.arrays, base[:, member["context_index"]])
            outputs.append(context[line_of_row] + _price_path(member, self.arrays, z))
        log = np.mean(np.stack(outputs), axis=0, dtype=np.float32).reshape(-1).astype(np.float64)
        return np.expm1(np.clip(log, 0.0, None)).reshape(n_prices, n_lines).T

    def save(self, arrays_path: Path, spec_path: Path) -> None:
        with open(arrays_path, "wb") as handle:
            np.savez(handle, **self.arrays)
        Path(spec_path).write_text(json.dumps(self.spec, indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, arrays_path: Path, spec_path: Path) -> "PortableModel":
        with np.load(arrays_path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        return cls(json.loads(Path(spec_path).read_text()), arrays)


def portable_model(
    network: tuple[dict[str, Any], dict[str, np.ndarray]], transformer: Any, metadata: Mapping[str, Any]
) -> PortableModel:
    """Bundle ``pricing.model.portable_network``'s output with the fitted transformer."""
    network_spec, arrays = network
    spec = {"format": PORTABLE_FORMAT, "network": network_spec,
            "transformer": transformer_spec(transformer), **dict(metadata)}
    if spec["transformer"]["output_features"] != list(network_spec["feature_names"]):
        raise DataValidationError("the transformer's output features differ from the network's inputs")
    return PortableModel(spec, arrays)
