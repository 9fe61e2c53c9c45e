"""Shared test settings. Each area has its own conftest (engine, web, browser, integration)."""
from __future__ import annotations

import os

# Tests never download weights: the machines are offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
