"""Shared test configuration. Area fixtures live in each folder's own conftest.py."""

from __future__ import annotations

import os

# Keep onnxruntime and numpy from oversubscribing the two cores the suite runs on.
os.environ.setdefault("OMP_NUM_THREADS", "1")
