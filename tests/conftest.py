"""Settings every test process shares, set before any test module imports Prefect."""
import os

# Prefect's temporary API gives up after 20 s by default; a loaded 2-core machine (migrations
# in a new PREFECT_HOME take 15-18 s alone) can need more. A slow start is not a failure.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# The tests choose their own stores: a shell that exported the user's registry, workspaces or
# storage (as `make run` in a clean clone is often given) must not point them at its own.
TEST_KNOBS = {"PRICELINEAGE_TINY_BUDGET"}
for name in [name for name in os.environ if name.startswith("PRICELINEAGE_") and name not in TEST_KNOBS]:
    del os.environ[name]



import pytest  # noqa: E402


def pytest_itemcollected(item):
    """How `make test` spreads the tests over its workers (pytest-xdist, ``--dist loadgroup``).

    Tests that share a module-scoped fixture run on one worker, so the fixture (a trained
    lineage, a running stack) is built once per run: such a module is one group. A module whose
    module fixtures are cheap says ``SPREAD_OVER_WORKERS = True`` and groups by hand only the
    tests that share an expensive one. (Marked here, as each test is collected: pytest-xdist
    reads the groups in its own ``pytest_collection_modifyitems``.)"""
    module = getattr(item, "module", None)
    if (module is not None and item.get_closest_marker("xdist_group") is None
            and not getattr(module, "SPREAD_OVER_WORKERS", False) and _uses_a_module_fixture(item)):
        item.add_marker(pytest.mark.xdist_group(module.__name__))


def pytest_collection_modifyitems(config, items):
    """The long end-to-end tests go first, so the workers finish together rather than one of
    them starting a five-minute run at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def _uses_a_module_fixture(item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    return info is not None and any(
        definition.scope == "module" for definitions in info.name2fixturedefs.values() for definition in definitions)


@pytest.fixture(scope="session")
def shared_dvc_cache(tmp_path_factory):
    """One DVC cache for the real-data project copies of a test run, whatever worker runs them
    (pytest-xdist's workers have their temporary folders side by side): outputs a copy's
    ``dvc.lock`` already names (the committed ETL and catalogue stage) are made once per test
    run and checked out from it in every later copy. DVC keeps no run cache for ``persist``
    outputs, so a stage whose lock entry differs (a test's tiny budget) runs in each copy.
    Tests that count which stages ran make copies of their own cache."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    cache = base / "shared-dvc-cache"
    cache.mkdir(exist_ok=True)
    return cache
