"""Shared pytest fixtures: small synthetic data made by unetlib.synthetic, temp folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Quiet TensorFlow's C++ start-up banner; must be set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parents[1]
ISBI_DIR = REPO_ROOT.parent / "shared" / "data" / "isbi2012-membrane"


@pytest.fixture(scope="session")
def isbi_dir() -> Path:
    """The real ISBI 2012 training set beside the repository; skip when it is absent."""
    if not (ISBI_DIR / "images").is_dir():
        pytest.skip(f"real data not found at {ISBI_DIR} (only present beside the team's checkout)")
    return ISBI_DIR
