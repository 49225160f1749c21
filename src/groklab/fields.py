"""The vocabulary of config fields, shared by every section: field metadata (help, aliases, role), the
validation helpers whose messages name the field, and the type check of a value given by name (a flag, a
sweep spec's entry), and the flags that spell a field."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, Sequence, get_args, get_origin

from groklab.errors import GroklabError


# What a field is to a run (metadata["role"]): "is" changes the numbers (data, model, optimizer, seed, batch,
# budget, evaluation schedule): a resume refuses any change to it. "source" says where the data comes from:
# a resume compares the data's content, not these spellings. "how" is how the run executes (device, progress,
# folder, ...): it may change between a run and its resume, which meta.json records.
ROLES = ("is", "source", "how")


def doc(help: str, *aliases: str, role: str = "is", **extra: Any) -> dict[str, Any]:
    """Field metadata: help text, alternative flag names (without dashes) and the field's role (ROLES)."""
    assert role in ROLES, role
    return {"help": help, "aliases": aliases, "role": role, **extra}


class ConfigError(GroklabError):
    """A configuration value is out of range; the message names the field."""


def require(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{name}: {message}")


def finite(section: Any) -> None:
    """Every float field is a finite number: inf would be accepted by a bound like lr > 0 and only show up as
    a run gone non-finite, or as config.json that is not JSON."""
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if isinstance(value, float):
            require(math.isfinite(value), f.name, f"must be a finite number, got {value}")


def at_most(value: int, limit: int, name: str) -> None:
    """Shapes and schedules far beyond any model here would overflow torch's sizes or loop for hours."""
    require(value <= limit, name, f"must be at most {limit:,}, got {value}")


def checked(name: str, tp: Any, value: Any) -> Any:
    """value if it fits the field's type (an int is accepted for a float); ConfigError otherwise."""
    allowed = [a for a in get_args(tp)] if get_origin(tp) in (typing.Union, types.UnionType) else [tp]
    if value is None:
        if type(None) in allowed:
            return None
        raise ConfigError(f"{name}: a value is required")
    for a in allowed:
        if get_origin(a) is Literal:
            if value in get_args(a):
                return value
        elif a is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:  # an integer of hundreds of digits
                raise ConfigError(f"{name}: {str(value)[:20]}... is too large for a float") from None
        elif a is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        elif a in (bool, str) and type(value) is a:
            return value
    want = " or ".join("one of " + ", ".join(map(repr, get_args(a))) if get_origin(a) is Literal
                       else getattr(a, "__name__", str(a)) for a in allowed if a is not type(None))
    raise ConfigError(f"{name}: expected {want}, got {value!r}")


def flag_spellings(name: str, aliases: Sequence[str] = ()) -> list[str]:
    """Every flag that sets field `name`: `--n_layer`, `--n-layer`, then its aliases both ways. The first is
    the one groklab writes (help, reports' commands); cli_args accepts them all."""
    out: list[str] = []
    for n in (name, *aliases):
        for spelling in (n, n.replace("_", "-")):
            if f"--{spelling}" not in out:
                out.append(f"--{spelling}")
    return out


def negated_flag(name: str) -> str:
    """The flag that turns a boolean field off: `--no_plot` (`--no-plot` works too)."""
    return f"--no_{name}"


def flag_words(name: str, value: Any) -> list[str]:
    """The command-line words that set config field `name` to `value`, spelled as cli_args reads them:
    `--n_layer 2`, `--compile`, `--no_plot`."""
    if isinstance(value, bool):
        return [flag_spellings(name)[0] if value else negated_flag(name)]
    return [flag_spellings(name)[0], str(value)]
