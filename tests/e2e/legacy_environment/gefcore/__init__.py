"""Checks its environment at import and runs the execution (see runner.py)."""

import os
import sys

REQUIRED = (
    "API_URL",
    "API_USER",
    "API_PASSWORD",
    "EXECUTION_ID",
    "PARAMS_S3_BUCKET",
    "PARAMS_S3_PREFIX",
)
missing = [name for name in REQUIRED if not os.environ.get(name)]
if missing:
    print(f"Missing environment variables: {', '.join(missing)}", file=sys.stderr)
    sys.exit(1)

from gefcore.runner import run  # noqa: E402

sys.exit(run())
