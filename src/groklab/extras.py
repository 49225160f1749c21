"""Optional packages (pyproject's extras): whether one is installed, and the one line that says how to get it.

Checked before anything runs, so that a sweep asked for `--tensorboard` without the package refuses at once
instead of marking every run failed.
"""

from __future__ import annotations

import importlib
from typing import Iterable

from groklab.errors import GroklabError

# run option (a TrainConfig field) -> (module it imports, package name, extra)
RUN_OPTIONS = {
    "tensorboard": ("torch.utils.tensorboard", "tensorboard", "tb"),
    "wandb": ("wandb", "wandb", "wandb"),
}


class MissingExtra(GroklabError):
    """An optional package that a command needs is not installed."""


def has(module: str) -> bool:
    try:
        importlib.import_module(module)
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules (tests)
        return False
    return True


def need(module: str, package: str, extra: str, what: str) -> None:
    """MissingExtra unless `module` imports: '<what> needs the <package> package: pip install ...'."""
    if not has(module):
        raise MissingExtra(f"{what} needs the {package} package: pip install 'groklab[{extra}]'")


def check_run_options(trains: Iterable[object]) -> None:
    """Every optional package these runs' TrainConfigs ask for (--tensorboard, --wandb) is installed."""
    trains = list(trains)
    for option, (module, package, extra) in RUN_OPTIONS.items():
        if any(getattr(t, option, False) for t in trains):
            need(module, package, extra, f"--{option}")
