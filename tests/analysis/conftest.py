"""Fixtures for the analysis tests: the published validation data and a synthetic runs root."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VALIDATION = (REPO / ".." / "shared" / "validation-data").resolve()


@pytest.fixture(scope="session")
def validation_dir() -> str:
    """../shared/validation-data relative to the repository root (skipped only if absent)."""
    if not VALIDATION.is_dir():
        pytest.skip(f"validation data folder {VALIDATION} is absent (it lives beside the repo in "
                    "shared/validation-data); the published-number tests need it")
    return str(VALIDATION)


@pytest.fixture(scope="session")
def synth(tmp_path_factory):
    """A synthetic runs root (analysis.synthetic) and its ground truth, written once."""
    from analysis.synthetic import write_synthetic_runs

    root = tmp_path_factory.mktemp("runs") / "root"
    info = write_synthetic_runs(str(root), seed=0)
    return str(root), info


@pytest.fixture(scope="session")
def runset(synth):
    from analysis.loading import load_runs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_runs(synth[0])


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds (still run by `make test`)")
