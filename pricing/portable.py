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


def forward_log(spec: Mapping[str, Any], arrays: Mapping[str, np.ndarray], x: np.ndarray,
                lines: np.ndarray | None = None, line_of_row: np.ndarray | None = None) -> np.ndarray:
    """``log1p(quantity)`` predictions for model input ``x`` (clipped to the train range).

    A demand curve's rows are a few lines at many prices: given ``lines`` (model input) and
    ``line_of_row``, every row of ``x`` must equal its line outside the price path (checked),
    and a price-monotone member's context path runs once per line instead of once per row."""
    x = _clip(arrays, x)
    if lines is not None:
        lines = _clip(arrays, lines)
    outputs, checked = [], set()
    for member in spec["members"]:
        if member["architecture"] == "plain":
            outputs.append(_forward_layers(member["layers"], arrays, x))
            continue
        key = member["key"]
        if lines is None:
            context = _forward_layers(member["layers"], arrays, x[:, member["context_index"]])
        else:
            index = member["context_index"]
            if tuple(index) not in checked:  # members share their context columns: check once
                if not np.array_equal(x[:, index], lines[:, index][line_of_row]):
                    raise DataValidationError("rows differ from their lines outside the price path")
                checked.add(tuple(index))
            context = _forward_layers(member["layers"], arrays, lines[:, index])[line_of_row]
        z = x[:, member["price_index"]]
        hidden = np.maximum(z @ arrays[f"{key}.price.hidden_weight"].T + arrays[f"{key}.price.hidden_bias"],
                            np.float32(0))
        price = -(z @ arrays[f"{key}.price.linear"].T + hidden @ arrays[f"{key}.price.out"].T)
        outputs.append(context + price)
    return np.mean(np.stack(outputs), axis=0, dtype=np.float32).reshape(-1).astype(np.float64)


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

    def predict_log(self, model_input: np.ndarray, lines: np.ndarray | None = None,
                    line_of_row: np.ndarray | None = None) -> np.ndarray:
        return forward_log(self.spec["network"], self.arrays, model_input, lines, line_of_row)

    def predict(self, raw: np.ndarray, lines: np.ndarray | None = None,
                line_of_row: np.ndarray | None = None) -> np.ndarray:
        """Units per line for engineered features ``raw`` (``raw_features`` order); ``lines``
        (engineered features too) and ``line_of_row``: see ``forward_log``."""
        shared = None if lines is None else self.model_input(lines)
        return np.expm1(np.clip(self.predict_log(self.model_input(raw), shared, line_of_row), 0.0, None))

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
