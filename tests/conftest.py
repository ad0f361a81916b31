"""Settings every test process shares, set before any test module imports Prefect."""
import os

# Prefect's temporary API gives up after 20 s by default; a loaded 2-core machine (migrations
# in a new PREFECT_HOME take 15-18 s alone) can need more. A slow start is not a failure.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
