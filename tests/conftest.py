"""Shared test fixtures. Each area keeps its fixtures in its own plugin module."""

pytest_plugins = [
    "tests.fixtures_catalog",
    "tests.fixtures_engine",
    "tests.fixtures_events",
    "tests.fixtures_zh",
]
