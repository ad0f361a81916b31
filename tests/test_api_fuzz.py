"""Property-based fuzz of the price API from its own OpenAPI document (schemathesis): for
generated requests to every operation, no 5xx, and every response — status, content type,
headers, body — matches the document. Left out: schemathesis's ``positive_data_acceptance``,
which expects every schema-valid request to succeed; the API rightly answers 400 to requests
OpenAPI cannot rule out (``unitprice_min`` above the product's default ``unitprice_max``, a
range beyond 10x its evidence), and those 400s are still checked against the document.

The schema is loaded eagerly at collection: schemathesis 4.32's lazy ``from_fixture`` reads
a pytest node attribute that pytest 9 no longer has (``Function._nodeid``)."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from app import create_app
from stores.settings import ApiSettings
from stores.registry_store import RegistryStore
from tests.api_models import publish, report_row_of, store_report

PLACE = Path(tempfile.mkdtemp(prefix="pricelineage-fuzz-"))
publish(PLACE / "registry", PLACE / "remote", "85123A")
publish(PLACE / "registry", PLACE / "remote", "22423", price_weeks=((3.0, 20),))
publish(PLACE / "registry", PLACE / "remote", "20725", decision="rejected")  # 503 for this one
store_report(RegistryStore(PLACE / "registry"), PLACE / "remote",
             [report_row_of(f"P{n:03d}", "pooled", n % 2 == 0, -10.0) for n in range(30)], "fuzz-run")
APP = create_app(ApiSettings(registry=str(PLACE / "registry"), dvc_remote=str(PLACE / "remote"), reload_seconds=3600))
schema = schemathesis.openapi.from_wsgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def remove_the_store():
    yield
    shutil.rmtree(PLACE, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_every_operation_answers_as_documented(case):
    case.call_and_validate(excluded_checks=[positive_data_acceptance])
