"""Every registered strategy, built-in or installed, passes the shipped conformance suite."""
from tokenprune.testing.conformance import StrategyConformance


class TestEveryStrategy(StrategyConformance):
    strategies = "*"
