"""The studies `groklab reproduce` trains: sweep specs shipped in groklab/experiments/studies/*.toml."""

from __future__ import annotations

from importlib import resources

from groklab.errors import GroklabError
from groklab.experiments.spec import SweepSpec, parse_spec

STUDY_NAMES = ("seed-000", "seed-003", "nanda")
QUICK_DIVISOR = 50  # --quick: this many times fewer steps (seed 000: 2,000 instead of 100,000)


def study_spec(name: str) -> SweepSpec:
    if name not in STUDY_NAMES:
        raise GroklabError(f"no study {name!r}; choose one of: {', '.join(STUDY_NAMES)}")
    text = resources.files("groklab.experiments").joinpath("studies", f"{name}.toml").read_text(encoding="utf-8")
    return parse_spec(text, f"{name}.toml")


def full_steps(spec: SweepSpec) -> int:
    """The longest step budget of the study's runs, as shipped."""
    return max(r.config.train.max_steps for r in spec.expand())
