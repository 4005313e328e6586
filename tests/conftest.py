"""Fixtures shared by every test package: the real label files and one demo-data build."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Folder of the real dataset label files (kept beside the repository, never copied into it)."""
    path = REPO_ROOT.parent / "shared" / "fixtures" / "labels"
    if not path.is_dir():
        pytest.skip(f"real label fixtures not found at {path}")
    return path


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo datasets in all five official layouts, built once per test session."""
    from data.demo import build_demo

    out = tmp_path_factory.mktemp("demo_data")
    build_demo(out, seed=0)
    return out
