"""pytest plugin (entry point ``pytest11``): parametrizes StrategyConformance subclasses.

Kept light: tokenprune is imported only when a test asks for a strategy.
"""
from __future__ import annotations

import fnmatch


def pytest_generate_tests(metafunc):
    if "tp_strategy_name" not in metafunc.fixturenames:
        return
    from tokenprune import list_strategies

    patterns = getattr(metafunc.cls, "strategies", "*")
    if isinstance(patterns, str):
        patterns = [patterns]
    names = [n for n in list_strategies() if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if not names:
        raise ValueError(f"no registered strategy matches {patterns}; registered: {list_strategies()}")
    metafunc.parametrize("tp_strategy_name", names)


def pytest_configure(config):
    config.addinivalue_line("markers", "tokenprune: tokenprune conformance tests")


import pytest  # noqa: E402


@pytest.fixture
def tp_strategy_name(request):  # overridden by parametrization
    return request.param


@pytest.fixture
def tp_strategy(tp_strategy_name):
    """The strategy under test, with default params."""
    from tokenprune import get_strategy

    return get_strategy(tp_strategy_name)
