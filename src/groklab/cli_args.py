"""argparse flags from dataclasses: the one way groklab declares a flag.

The config sections (config.py) give `train`, `run`, `sweep` and `reproduce` their config flags; every
command's own options are a small dataclass of the same kind (cli_options.py). A field's metadata
(`config.doc`) holds its help, its aliases (the seeds' spellings: `--max_iters`, `--prime`, `--beta_1`, ...),
and where needed `default_text` (a default that depends on other settings), `positional`, `parse` (an argparse
type) or `shortcuts` (`-q` for `--verbosity quiet`). Every flag also takes its dashed form
(`--n-layer`); help lists the underscore spellings. Config flags default to "not given", so only the flags a
user gave override the base config (`groklab run` keeps the main job's settings, a sweep its spec's [base]).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import re
import types
import typing
from typing import Any, Literal, get_args, get_origin, get_type_hints

from groklab.config import SECTION_CLASSES, RunConfig
from groklab.fields import flag_spellings, negated_flag

SECTIONS = tuple(SECTION_CLASSES.items())


# ---------------------------------------------------------------- the parser: short usage, "did you mean"

class Parser(argparse.ArgumentParser):
    """argparse, with a one-line usage and a suggestion for a misspelt flag, command or choice; errors stay
    `groklab CMD: error: ...` with exit status 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        ns, extras = self.parse_known_args(args, namespace)
        if extras:  # reported by the command's own parser, with its own flags to suggest from
            sub = _subparsers(self).get(getattr(ns, "command", None) or "", self)
            sub.error(f"unrecognized arguments: {' '.join(extras)}{_suggest_flag(sub, extras)}")
        return ns

    def format_usage(self) -> str:
        return f"usage: {short_usage(self)}\n"

    def error(self, message: str) -> typing.NoReturn:  # type: ignore[override]
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if choice:
            close = difflib.get_close_matches(choice.group(1), re.findall(r"'([^']*)'", choice.group(2)), n=1)
            message += f"; did you mean '{close[0]}'?" if close else ""
        self.exit(2, f"{self.format_usage()}{self.prog}: error: {message}\n")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _suggest_flag(parser: argparse.ArgumentParser, extras: list[str]) -> str:
    known = [s for s in parser._option_string_actions if s.startswith("--")]
    for word in extras:
        if word.startswith("-"):
            close = difflib.get_close_matches(word.split("=", 1)[0], known, n=1, cutoff=0.6)
            if close:
                return f" (did you mean {close[0]}?)"
    return ""


def short_usage(parser: argparse.ArgumentParser) -> str:
    """`groklab sweep SPEC --out OUT [options]`: positionals and required flags; `--help` lists the rest."""
    words = [parser.prog]
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            words.append(f"{a.metavar} ...")
        elif not a.option_strings:
            name = a.metavar or a.dest.upper()
            words.append(f"[{name}]" if a.nargs == "?" else name)
        elif a.required:
            words.append(f"{a.option_strings[0]} {a.metavar or a.dest.upper()}")
    if any(a.option_strings and not a.required and a.help != argparse.SUPPRESS for a in parser._actions):
        words.append("[options]")
    return " ".join(words)


class HelpFormatter(argparse.HelpFormatter):
    """Each flag once: its underscore spellings and its value's name (`--max_steps, --max_iters INT`)."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings:
            return super()._format_action_invocation(action)
        shown = ", ".join(getattr(action, "shown", action.option_strings))
        if action.nargs == 0:
            return shown
        value = self._format_args(action, self._get_default_metavar_for_optional(action))
        return f"{shown} {value}"


# ---------------------------------------------------------------- fields -> flags

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


METAVARS = {int: "INT", float: "X", str: "TEXT"}


def _metavar(name: str, tp: Any) -> str:
    if name == "out" or name.endswith("_dir"):
        return "DIR"
    if name.endswith("_file"):
        return "FILE"
    return METAVARS.get(tp, "VALUE")


def default_text(value: Any) -> str:
    """A default as help shows it (and as a flag would take it back)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _help(f: dataclasses.Field, value: Any, show_default: bool) -> str:
    """The field's help with its default said once: `default_text` where the value is the field's own
    default, else the value itself (`groklab run`'s main job); nothing for an unset (None) value, or for a
    switch that is off unless given."""
    text = f.metadata.get("help", "")
    if show_default:
        own = f.default if f.default is not dataclasses.MISSING else None
        said = f.metadata.get("default_text") if value == own else None
        if said is None and value not in (None, ""):
            said = default_text(value)
        if said:
            text += f" (default: {said})"
    return text.replace("%", "%%")


def _add_field(group: argparse._ActionsContainer, f: dataclasses.Field, tp: Any, value: Any, *, config: bool,
               show_default: bool) -> None:
    """One field as a flag (or a positional). `config`: a config flag, whose default is "not given" and whose
    bool takes an optional value (`--compile false`); else a command's option, with the field's default and a
    bool that is a plain switch (`--json`)."""
    meta = f.metadata
    tp = _unwrap_optional(tp)
    help_text = _help(f, value, show_default and (config or tp is not bool))
    if meta.get("positional"):
        nargs = "?" if f.default is not dataclasses.MISSING else None
        group.add_argument(f.name, nargs=nargs, default=value, help=help_text, metavar=f.name.upper())
        return
    names = flag_spellings(f.name, meta.get("aliases", ()))
    kwargs: dict[str, Any] = {"dest": f.name, "help": help_text}
    if config:
        kwargs["default"] = argparse.SUPPRESS
    elif f.default is dataclasses.MISSING:
        kwargs["required"] = True
    else:
        kwargs["default"] = value
    if tp is bool:
        if config:
            kwargs.update(type=_bool, nargs="?", const=True, metavar="BOOL")
        else:
            kwargs["action"] = "store_true"
        action = group.add_argument(*names, **kwargs)
        group.add_argument(negated_flag(f.name), negated_flag(f.name).replace("_", "-"), dest=f.name,
                           action="store_false", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    else:
        if get_origin(tp) is Literal:
            kwargs.update(type=str, choices=list(get_args(tp)))
        elif get_origin(tp) is list:
            kwargs.update(type=get_args(tp)[0], nargs="*", metavar="TEXT")
        else:
            kwargs.update(type=meta.get("parse", tp), metavar=_metavar(f.name, tp))
        action = group.add_argument(*names, **kwargs)
    action.shown = [n for n in names if "-" not in n[2:]] or names[:1]  # type: ignore[attr-defined]
    for const, flags in meta.get("shortcuts", {}).items():
        shortcut = group.add_argument(*flags, dest=f.name, action="store_const", const=const,
                                      default=argparse.SUPPRESS if config else value,
                                      help=f"--{f.name} {const}")
        shortcut.shown = [s for s in flags if "-" not in s.lstrip("-")]  # type: ignore[attr-defined]


def add_config_flags(parser: argparse.ArgumentParser, base: RunConfig | None, skip: tuple[str, ...] = ()) -> None:
    """Every config field as a flag, grouped by section. `base`: the config the flags override, whose values
    help shows as defaults; None where they override each run's own settings (a sweep's spec), so no
    default applies."""
    for section, cls in SECTIONS:
        title = f"{section} options" + ("" if base is not None else " (override the spec's settings for every run)")
        group = parser.add_argument_group(title)
        hints = get_type_hints(cls)
        current = getattr(base if base is not None else RunConfig(), section)
        for f in dataclasses.fields(cls):
            if f.name not in skip:
                _add_field(group, f, hints[f.name], getattr(current, f.name), config=True,
                           show_default=base is not None)


def add_option_flags(parser: argparse.ArgumentParser, cls: type, title: str | None = None) -> None:
    """A command's own options (a dataclass of cli_options) as positionals and flags, defaults shown."""
    group = parser.add_argument_group(title) if title else parser
    hints = get_type_hints(cls)
    fields = sorted(dataclasses.fields(cls), key=lambda f: (not f.metadata.get("positional"),
                                                           f.default is not dataclasses.MISSING))
    for f in fields:  # positionals first, then required flags (a base class's fields come first otherwise)
        value = f.default if f.default is not dataclasses.MISSING else None
        _add_field(group, f, hints[f.name], value, config=False, show_default=True)


def options_from_args(ns: argparse.Namespace, cls: type) -> Any:
    """The command's options dataclass from the parsed flags (validated by its __post_init__)."""
    return cls(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(cls) if hasattr(ns, f.name)})


def given_fields(ns: argparse.Namespace) -> dict[str, Any]:
    """The config fields the user gave on the command line (flags default to SUPPRESS)."""
    known = {f.name for _, cls in SECTIONS for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(ns).items() if k in known}


def config_from_args(ns: argparse.Namespace, base: RunConfig) -> RunConfig:
    """The base config with every flag the user gave applied (validated by the dataclasses)."""
    given = given_fields(ns)
    return base.replace(**given) if given else base


def at_least(low: float, kind: type = int):
    """An argparse type: a number of `kind` >= low (a negative --max_group trained nothing and exited 0)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not value >= low:
            raise argparse.ArgumentTypeError(f"must be at least {low:g}, got {text}")
        return value

    return parse


def positive(text: str) -> float:
    """An argparse type: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value
