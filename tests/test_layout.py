"""dvc.yaml spells the paths of pricing/layout.py as literals: keep the two in step."""
from pathlib import Path

import pytest
from dvc.repo import Repo

from pricing.layout import Layout, load_params

ROOT = Path(__file__).resolve().parents[1]


def expected_paths(layout: Layout, stockcode: str) -> dict[str, set[Path]]:
    return {
        "etl_pipeline": {layout.original_df, layout.processed_df, layout.etl_metrics},
        "estimate_price_response": {layout.price_response_table, layout.price_points,
                                    layout.price_response_metrics, layout.price_response_plot},
        f"data_drift_check@{stockcode}": {
            layout.drift_report(stockcode),
            layout.drift_metrics(stockcode),
            layout.drift_plot(stockcode),
        },
        f"preprocess@{stockcode}": {layout.preprocessed_dir(stockcode), layout.data_metrics(stockcode)},
        f"tune_primary_model@{stockcode}": {
            layout.model_checkpoint(stockcode),
            layout.portable_model_arrays(stockcode),
            layout.portable_model_spec(stockcode),
            layout.val_metrics(stockcode),
            layout.tuning_history(stockcode),
        },
        f"inference_primary_model@{stockcode}": {
            layout.test_metrics(stockcode),
            layout.inference_results(stockcode),
            layout.shap_values(stockcode),
            layout.shap_importance(stockcode),
            layout.shap_beeswarm(stockcode),
            layout.demand_curve(stockcode),
        },
        f"assess_model_risk@{stockcode}": {layout.risk_metrics(stockcode)},
    }


@pytest.fixture(scope="module")
def dvc_outputs() -> dict[str, set[Path]]:
    with Repo(str(ROOT)) as repo:
        return {stage.addressing: {Path(out.fs_path) for out in stage.outs} for stage in repo.index.stages}


def test_every_stage_writes_exactly_the_layout_paths(dvc_outputs):
    layout = Layout(ROOT)
    for stockcode in load_params(ROOT)["stockcodes"]:
        for stage, paths in expected_paths(layout, stockcode).items():
            assert dvc_outputs[stage] == paths, stage


def test_the_lineage_has_exactly_its_stages(dvc_outputs):
    layout = Layout(ROOT)
    expected = set()
    for stockcode in load_params(ROOT)["stockcodes"]:
        expected |= set(expected_paths(layout, stockcode))
    assert set(dvc_outputs) == expected
