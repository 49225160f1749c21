"""argparse flags generated from the config dataclasses: `--n_layer` and `--n-layer` both work, the seeds'
spellings (`--max_iters`, `--prime`, `--beta_1`, ...) are aliases, and only flags the user gave override the
base config (so presets such as `groklab run` keep their own defaults)."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, Literal, get_args, get_origin, get_type_hints

from groklab.config import SECTION_CLASSES, RunConfig

SECTIONS = tuple(SECTION_CLASSES.items())


def _flag_names(name: str, aliases: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for n in (name, *aliases):
        for spelling in (n, n.replace("_", "-")):
            flag = f"--{spelling}"
            if flag not in out:
                out.append(flag)
    return out


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _unwrap_optional(tp: Any) -> Any:
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def add_config_flags(parser: argparse.ArgumentParser, base: RunConfig, skip: tuple[str, ...] = ()) -> None:
    for section, cls in SECTIONS:
        group = parser.add_argument_group(f"{section} options")
        hints = get_type_hints(cls)
        current = getattr(base, section)
        for f in dataclasses.fields(cls):
            if f.name in skip:
                continue
            tp = _unwrap_optional(hints[f.name])
            kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
            default = getattr(current, f.name)
            help_text = f"{f.metadata.get('help', '')} (default: {default})"
            if tp is bool:
                kwargs.update(type=_bool, nargs="?", const=True, metavar="BOOL")
                group.add_argument(*_flag_names(f.name, f.metadata.get("aliases", ())), help=help_text, **kwargs)
                group.add_argument(f"--no_{f.name}", f"--no-{f.name.replace('_', '-')}", dest=f.name,
                                   action="store_false", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
                continue
            if get_origin(tp) is Literal:
                kwargs.update(type=str, choices=list(get_args(tp)))
            else:
                kwargs.update(type=tp, metavar=f.name.upper())
            group.add_argument(*_flag_names(f.name, f.metadata.get("aliases", ())), help=help_text, **kwargs)


def given_fields(ns: argparse.Namespace) -> dict[str, Any]:
    """The config fields the user gave on the command line (flags default to SUPPRESS)."""
    known = {f.name for _, cls in SECTIONS for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(ns).items() if k in known}


def config_from_args(ns: argparse.Namespace, base: RunConfig) -> RunConfig:
    """The base config with every flag the user gave applied (validated by the dataclasses)."""
    given = given_fields(ns)
    return base.replace(**given) if given else base
