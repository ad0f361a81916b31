"""A product's demand curve over its list price, the revenue curve, and a recommendation that
stays inside the evidence.

Pure: the model comes in as a plain callable, ``predict(features) -> demand``, taking a 2-D
NumPy array of *engineered* features (columns in ``feature_columns`` order, the raw split's
columns) and returning units per line. The lineage passes the torch network behind its
fitted transformer; the price API can pass the NumPy forward of the exported model
(``pricing/portable.py``) and never import torch.

- **Context**: a product's recent lines (by segment, in their own mix). At each price of the
  grid every list-price feature is recomputed with ``pricing.features.list_price_features``
  (the ETL's own definition); every other column stays as it was.
- **Evidence**: the list prices the product was actually sold at, week by week: lines and
  weeks at each, and how often the list price changed. Only those prices say how demand
  answers a price, so the recommendation never leaves ``[lowest, highest]`` observed list
  price; with no change ever observed it is the current price, flagged
  ``insufficient_price_variation``.
- **Soundness figures**: the largest rise of predicted demand between neighbouring grid
  prices over every context line (0 for a sound model), and the arc elasticity of the mean
  demand across the evidence. The risk gate judges them; this module only measures.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from pricing.errors import DataValidationError
from pricing.features import LIST_PRICE, list_price_features

if TYPE_CHECKING:  # the price API runs this module without pandas (requirements-serving.txt)
    import pandas as pd

Predict = Callable[[np.ndarray], np.ndarray]
SEGMENT = "is_registered"
SEGMENT_NAMES = {1: "registered", 0: "unregistered"}
INSUFFICIENT_PRICE_VARIATION = "insufficient_price_variation"
# Relative slack for "non-increasing": float32 networks, float64 means.
RISE_TOLERANCE = 1e-6


@dataclass
class Evidence:
    """The list prices a product was sold at: per price its lines and weeks, and changes."""

    prices: list[dict[str, Any]]  # {"price", "lines", "weeks"}, ascending price
    n_changes: int  # times the weekly list price moved between prices held >= min_weeks
    current_price: float  # the list price of the latest week
    n_weeks: int
    min_weeks: int  # a price counts as evidence from this many weeks at it

    @property
    def evidenced_prices(self) -> list[float]:
        return [p["price"] for p in self.prices if p["weeks"] >= self.min_weeks]

    @property
    def evidenced_range(self) -> tuple[float, float] | None:
        """Lowest and highest evidenced list price (None when no price held long enough)."""
        prices = self.evidenced_prices
        return (min(prices), max(prices)) if prices else None

    @property
    def sufficient(self) -> bool:
        return self.n_changes > 0 and len(self.evidenced_prices) >= 2

    def as_dict(self) -> dict[str, Any]:
        return {
            "prices": self.prices,
            "list_price_changes": self.n_changes,
            "current_price": self.current_price,
            "weeks": self.n_weeks,
            "min_weeks_at_price": self.min_weeks,
            "evidenced_range": list(self.evidenced_range) if self.evidenced_range else None,
        }


def _datetimes(when) -> np.ndarray:
    if isinstance(when, np.ndarray) and when.dtype.kind == "M":
        return when
    import pandas as pd  # anything else (strings, a pandas Series): pandas parses it

    return pd.to_datetime(pd.Series(when)).to_numpy()


def price_evidence(list_price, when, min_weeks: int = 2) -> Evidence:
    """Evidence from a product's lines: their list price and date (any order)."""
    frame = pl.DataFrame({"price": np.round(np.asarray(list_price, dtype=np.float64), 2),
                          "when": _datetimes(when)})
    if frame.height == 0:
        raise DataValidationError("no lines to take price evidence from")
    if frame["price"].is_null().any() or not np.isfinite(frame["price"].to_numpy()).all():
        raise DataValidationError("list prices must be finite numbers")
    frame = frame.with_columns(pl.col("when").dt.truncate("1w").alias("week"))
    # A week's list price is the one most of its lines carry (the ETL gives a week one price,
    # except before a product's first registered sale).
    weekly = (
        frame.group_by("week", "price").len()
        .sort(["week", "len", "price"], descending=[False, True, True])
        .unique("week", keep="first", maintain_order=True)
        .sort("week")
    )
    per_price = (
        frame.group_by("price").agg(pl.len().alias("lines"))
        .join(weekly.group_by("price").agg(pl.len().alias("weeks")), on="price", how="left")
        .with_columns(pl.col("weeks").fill_null(0))
        .sort("price")
    )
    # Changes between prices that held: a one-week blip (or a product's first week, before any
    # list price was known) is no change of list price.
    held = per_price.filter(pl.col("weeks") >= int(min_weeks))["price"]
    steady = weekly.filter(pl.col("price").is_in(held.implode()))["price"]
    changes = int((steady.diff().fill_null(0.0) != 0).sum())
    return Evidence(
        prices=[{"price": float(r["price"]), "lines": int(r["lines"]), "weeks": int(r["weeks"])}
                for r in per_price.iter_rows(named=True)],
        n_changes=changes,
        current_price=float(weekly["price"][-1]),
        n_weeks=weekly.height,
        min_weeks=int(min_weeks),
    )


def price_grid(evidence: Evidence, n_points: int, diagnostic_span: float) -> np.ndarray:
    """Prices to draw the curve at: the evidenced range (and every evidenced price) when the
    list price changed; otherwise ``current × (1 ± diagnostic_span)``, to check the model's
    response, never to recommend from."""
    if n_points < 2:
        raise DataValidationError(f"a demand curve needs at least 2 grid points, got {n_points}")
    if evidence.sufficient:
        low, high = min(evidence.evidenced_prices), max(evidence.evidenced_prices)
        grid = np.concatenate([np.linspace(low, high, n_points), evidence.evidenced_prices])
    else:
        if not 0 < diagnostic_span < 1:
            raise DataValidationError(f"diagnostic_span must be in (0, 1), got {diagnostic_span}")
        current = evidence.current_price
        grid = np.concatenate([np.linspace(current * (1 - diagnostic_span), current * (1 + diagnostic_span),
                                           n_points), [current]])
    return np.unique(np.round(grid, 4))


def reprice(context: pl.DataFrame | pd.DataFrame, price: float) -> pl.DataFrame:
    """``context`` with every list-price feature recomputed at ``price``."""
    frame = context if isinstance(context, pl.DataFrame) else pl.from_pandas(context)
    return frame.with_columns(list_price_features(pl.lit(float(price), dtype=pl.Float64)))


def _features(frame: pl.DataFrame, feature_columns: Sequence[str]) -> np.ndarray:
    missing = [c for c in feature_columns if c not in frame.columns]
    if missing:
        raise DataValidationError(f"the context lacks feature column(s) {', '.join(missing)}")
    return frame.select([pl.col(c).cast(pl.Float64) for c in feature_columns]).to_numpy()


@dataclass
class DemandCurve:
    prices: np.ndarray
    per_line: np.ndarray  # (context lines, prices): predicted units of each line at each price
    segments: np.ndarray  # the context lines' segment (is_registered)

    @property
    def demand(self) -> np.ndarray:
        """Mean predicted units per line, the context's own segment mix."""
        return self.per_line.mean(axis=0)

    @property
    def revenue(self) -> np.ndarray:
        """List-price revenue per line: price × mean demand."""
        return self.prices * self.demand

    def segment_demand(self) -> dict[str, np.ndarray]:
        return {SEGMENT_NAMES.get(int(s), str(s)): self.per_line[self.segments == s].mean(axis=0)
                for s in np.unique(self.segments)}

    def largest_rise(self) -> dict[str, float]:
        """The largest increase of any line's predicted demand from one grid price to the next."""
        steps = np.diff(self.per_line, axis=1)
        relative = steps / np.maximum(self.per_line[:, :-1], 1e-9)
        worst = int(np.argmax(relative)) if steps.size else 0
        return {
            "units": float(steps.max(initial=0.0)),
            "relative": float(relative.max(initial=0.0)),
            "lines_rising": int((relative > RISE_TOLERANCE).any(axis=1).sum()),
            "at_price": float(self.prices[worst % max(steps.shape[1], 1)]) if steps.size else None,
        }


def demand_curve(
    context: pl.DataFrame | pd.DataFrame,
    prices: Sequence[float],
    predict: Predict,
    feature_columns: Sequence[str],
) -> DemandCurve:
    """Predicted demand of every ``context`` line at every price (one ``predict`` call)."""
    frame = context if isinstance(context, pl.DataFrame) else pl.from_pandas(context)
    prices = np.asarray(prices, dtype=np.float64)
    if frame.height == 0:
        raise DataValidationError("the demand curve needs at least one context line")
    if len(prices) == 0 or not np.isfinite(prices).all() or (prices <= 0).any():
        raise DataValidationError("grid prices must be positive finite numbers")
    if SEGMENT not in frame.columns:
        raise DataValidationError(f"the context lacks the segment column {SEGMENT!r}")
    stacked = np.concatenate([_features(reprice(frame, p), feature_columns) for p in prices])
    demand = np.asarray(predict(stacked), dtype=np.float64).reshape(-1)
    if len(demand) != len(stacked) or not np.isfinite(demand).all():
        raise DataValidationError(f"predict returned {len(demand)} finite values for {len(stacked)} rows")
    return DemandCurve(prices=prices, per_line=demand.reshape(len(prices), frame.height).T,
                       segments=frame[SEGMENT].to_numpy())


def arc_elasticity(prices: np.ndarray, demand: np.ndarray, low: float, high: float) -> float | None:
    """d log(demand) / d log(price) between ``low`` and ``high`` (None if they coincide)."""
    if high <= low:
        return None
    d_low, d_high = np.interp([low, high], prices, demand)
    if d_low <= 0 or d_high <= 0:
        return None
    return float((np.log(d_high) - np.log(d_low)) / (np.log(high) - np.log(low)))


@dataclass
class PriceResponse:
    curve: DemandCurve
    evidence: Evidence
    recommended_price: float
    flags: list[str] = field(default_factory=list)
    elasticity: float | None = None

    def table(self) -> pd.DataFrame:
        """One row per grid price: demand (overall and by segment), revenue, evidence, pick."""
        import pandas as pd

        out = pd.DataFrame({"price": self.curve.prices, "demand": self.curve.demand, "revenue": self.curve.revenue})
        for name, values in self.curve.segment_demand().items():
            out[f"demand_{name}"] = values
        observed = {p["price"] for p in self.evidence.prices if p["weeks"] >= self.evidence.min_weeks}
        out["observed"] = out["price"].round(2).isin(observed).astype(int)
        out["recommended"] = np.isclose(out["price"], self.recommended_price).astype(int)
        # the recommendation as its own series (one point) for the plot
        out["recommended_revenue"] = out["revenue"].where(out["recommended"] == 1)
        return out

    def summary(self) -> dict[str, Any]:
        table = self.table()
        at = table.loc[table["recommended"] == 1].iloc[0]
        current = np.interp(self.evidence.current_price, self.curve.prices, self.curve.demand)
        return {
            "recommended_price": self.recommended_price,
            "current_price": self.evidence.current_price,
            "flags": list(self.flags),
            "demand_at_recommended": float(at["demand"]),
            "revenue_at_recommended": float(at["revenue"]),
            "demand_at_current": float(current),
            "elasticity": self.elasticity,
            "grid_elasticity": arc_elasticity(self.curve.prices, self.curve.demand,
                                              float(self.curve.prices.min()), float(self.curve.prices.max())),
            "grid": {"low": float(self.curve.prices.min()), "high": float(self.curve.prices.max()),
                     "points": int(len(self.curve.prices))},
            "context_lines": int(self.curve.per_line.shape[0]),
            "largest_rise": self.curve.largest_rise(),
            "evidence": self.evidence.as_dict(),
        }


def price_response(
    context: pl.DataFrame | pd.DataFrame,
    evidence: Evidence,
    predict: Predict,
    feature_columns: Sequence[str],
    *,
    n_points: int = 25,
    diagnostic_span: float = 0.2,
) -> PriceResponse:
    """The demand and revenue curves of ``context`` and the revenue-maximising list price
    inside the evidence (the current price, flagged, when the list price never changed)."""
    prices = price_grid(evidence, n_points, diagnostic_span)
    curve = demand_curve(context, prices, predict, feature_columns)
    if not evidence.sufficient:
        return PriceResponse(curve, evidence, recommended_price=evidence.current_price,
                             flags=[INSUFFICIENT_PRICE_VARIATION])
    low, high = min(evidence.evidenced_prices), max(evidence.evidenced_prices)
    inside = (prices >= low - 1e-9) & (prices <= high + 1e-9)
    revenue = np.where(inside, curve.revenue, -np.inf)
    best = int(np.argmax(revenue))
    return PriceResponse(curve, evidence, recommended_price=float(prices[best]),
                         elasticity=arc_elasticity(prices, curve.demand, low, high))


def context_lines(raw_features: pd.DataFrame, max_lines: int) -> pd.DataFrame:
    """The product's ``max_lines`` most recent lines (``raw_features`` in time order)."""
    if max_lines < 1:
        raise DataValidationError(f"max_lines must be >= 1, got {max_lines}")
    if LIST_PRICE not in raw_features.columns:
        raise DataValidationError(f"the context lacks the {LIST_PRICE!r} column")
    return raw_features.iloc[-int(max_lines):].reset_index(drop=True)


def judge_price_response(
    summary: dict[str, Any], elasticity_band: Sequence[float], rise_tolerance: float = RISE_TOLERANCE
) -> dict[str, Any]:
    """The price-response verdict of a ``PriceResponse.summary()``: ``passed``, ``failed`` or
    ``insufficient_price_variation`` (sound, but the data cannot tell an elasticity: the
    recommendation is the current price), with the reasons and the figures behind it.

    Checked whatever the architecture promises: predicted demand never rises from one grid
    price to the next on any context line; the elasticity across the evidence lies in
    ``elasticity_band``; the recommended price lies inside the evidence."""
    low, high = (float(v) for v in elasticity_band)
    if low > high:
        raise DataValidationError(f"elasticity_band must be [low, high], got {list(elasticity_band)}")
    reasons: list[str] = []
    rise = summary["largest_rise"]
    monotone = rise["relative"] <= float(rise_tolerance)
    if not monotone:
        reasons.append(
            f"price response unsound: predicted demand rises with the list price, by up to "
            f"{rise['relative']:.1%} between neighbouring grid prices (from {rise['at_price']:.2f}), on "
            f"{rise['lines_rising']} of {summary['context_lines']} context lines"
        )
    evidence = summary["evidence"]
    flagged = INSUFFICIENT_PRICE_VARIATION in summary["flags"]
    recommended = float(summary["recommended_price"])
    span = evidence["evidenced_range"] or [evidence["current_price"], evidence["current_price"]]
    inside = (span[0] - 1e-9 <= recommended <= span[1] + 1e-9) or (flagged and recommended == evidence["current_price"])
    if not inside:
        reasons.append(f"recommended price {recommended:.2f} lies outside the evidence {span}")
    elasticity = summary["elasticity"]
    elasticity_check: dict[str, Any] = {"band": [low, high], "value": elasticity}
    if flagged:
        elasticity_check["status"] = INSUFFICIENT_PRICE_VARIATION
        elasticity_check["note"] = (
            f"no list-price change observed in {evidence['weeks']} weeks: the data cannot tell how demand "
            f"answers a price; recommending the current price {evidence['current_price']:.2f}"
        )
    elif elasticity is None:
        elasticity_check["status"] = "failed"
        reasons.append(f"price elasticity across the evidence {span} cannot be measured: predicted demand is zero there")
    elif not low <= elasticity <= high:
        elasticity_check["status"] = "failed"
        reasons.append(f"price elasticity {elasticity:.2f} across the evidence {span} is outside the band [{low}, {high}]")
    else:
        elasticity_check["status"] = "passed"
    status = "failed" if reasons else (INSUFFICIENT_PRICE_VARIATION if flagged else "passed")
    return {
        "status": status,
        "passed": not reasons,
        "reasons": reasons,
        "checks": {
            "non_increasing": {"passed": monotone, "tolerance": float(rise_tolerance), **rise},
            "elasticity": elasticity_check,
            "inside_evidence": {"passed": inside, "recommended_price": recommended, "evidenced_range": span},
        },
        "recommended_price": recommended,
        "current_price": evidence["current_price"],
        "flags": list(summary["flags"]),
        "evidence": evidence,
    }
