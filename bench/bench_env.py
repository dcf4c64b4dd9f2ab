"""Where the benchmarks find the project and the services they use (the tests' variables)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `app` and `tests` importable
    sys.path.insert(0, str(ROOT))

POSTGRES_SERVER_URL = os.environ.get(
    "ADMIN_MIT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_SERVER = os.environ.get("ADMIN_MIT_TEST_REDIS", "127.0.0.1:6379")
