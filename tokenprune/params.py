"""Typed, documented strategy hyper-parameters with defaults and value checks."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .errors import ParamError

_MISSING = object()


@dataclass(frozen=True)
class Param:
    """One hyper-parameter: its default (the paper's), what it means, and what values are allowed.

    ``type`` is inferred from the default when not given; ``choices`` restricts
    to a set of values; ``min``/``max`` bound numbers (inclusive);
    ``nullable`` also accepts None.
    """

    default: Any
    help: str = ""
    type: type | None = None
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None
    nullable: bool = False

    @property
    def kind(self) -> type:
        if self.type is not None:
            return self.type
        if self.default is None:
            return object
        return type(self.default)

    def allowed(self) -> str:
        """Human description of the allowed values, for error messages and `show`."""
        if self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            text = self.kind.__name__
            if self.min is not None and self.max is not None:
                text += f" in [{self.min}, {self.max}]"
            elif self.min is not None:
                text += f" >= {self.min}"
            elif self.max is not None:
                text += f" <= {self.max}"
        if self.nullable or self.default is None:
            text += " or null"
        return text

    def coerce(self, value, *, owner: str, name: str):
        """Return ``value`` checked (and int->float widened); raise ParamError saying what is allowed."""

        def bad(reason=""):
            return ParamError(
                f"{owner}: param {name}={value!r} is invalid{reason}; "
                f"allowed: {self.allowed()}"
            )

        if value is None:
            if self.nullable or self.default is None:
                return None
            raise bad()
        kind = self.kind
        if kind is bool:
            if not isinstance(value, bool):
                raise bad()
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                else:
                    raise bad()
        elif kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad()
            value = float(value)
            if not math.isfinite(value):
                raise bad(" (not finite)")
        elif kind is str:
            if not isinstance(value, str):
                raise bad()
        elif kind is not object and not isinstance(value, kind):
            raise bad()
        if self.choices is not None and value not in self.choices:
            raise bad()
        if self.min is not None and value < self.min:
            raise bad(f" (below {self.min})")
        if self.max is not None and value > self.max:
            raise bad(f" (above {self.max})")
        return value


class Config:
    """Read-only attribute view of a strategy's resolved parameter values."""

    __slots__ = ("_values",)

    def __init__(self, values: dict):
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, key):
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key, value):
        raise AttributeError("strategy params are read-only; build a new strategy with get_strategy()")

    def __getitem__(self, key):
        return self._values[key]

    def as_dict(self) -> dict:
        return dict(self._values)

    def __repr__(self):
        inner = ", ".join(f"{k}={v!r}" for k, v in self._values.items())
        return f"Config({inner})"


def resolve(declared: dict[str, Param], overrides: dict, *, owner: str) -> dict:
    """Defaults overlaid with checked overrides; unknown names list the valid ones.

    ``owner`` names what the params belong to in messages, e.g. "strategy 'fastv'".
    """
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        valid = ", ".join(sorted(declared)) or "(none)"
        raise ParamError(
            f"{owner}: unknown param{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(unknown)}; valid params: {valid}"
        )
    values = {}
    for name, param in declared.items():
        raw = overrides.get(name, param.default)
        values[name] = param.coerce(raw, owner=owner, name=name)
    return values
