"""Each command's own options, declared as the config is: a frozen dataclass a command, a field a flag, its
help and aliases in `config.doc` metadata, checked in `__post_init__`. cli_args turns them into flags; the
config sections give the training commands the rest."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from groklab.cli_args import at_least, positive
from groklab.config import DEVICE_HELP, doc, is_device_name
from groklab.errors import GroklabError
from groklab.experiments.spec import MAX_RUNS

OPS_HELP = ("operation(s): + - * / # @ & $ ! on Z_p, o % : on permutations (p = n!, 120 for S5), or names (add, "
            "sub, mul, div, perm, perm_conj, perm_aba, ...); '+,-' mixes")


@dataclass(frozen=True, kw_only=True)
class DataOptions:
    out: str = field(metadata=doc("output folder (new or empty)", "out_dir"))
    op: str | None = field(default=None, metadata=doc(OPS_HELP, "ops", "operators"))
    p: int | None = field(default=None, metadata=doc("modulus p", "prime"))
    text: str | None = field(default=None, metadata=doc(
        "a text to memorise instead of equations: writes text.txt and manifest.json, which `train --data_dir` "
        "trains on (seed 000's data/sanity_check)"))
    seed: int = field(default=0, metadata=doc("seed of the split"))
    num_samples: int | None = field(default=None, metadata=doc("N distinct random equations instead of all pairs"))
    fractions: str | None = field(default=None, metadata=doc(
        "train,val,test shares", default_text="0.7,0.15,0.15, or 0.4,0.4,0.2 with --num_samples"))

    def fraction_values(self) -> tuple[float, float, float] | None:
        if self.fractions is None:
            return None
        try:
            values = tuple(float(x) for x in self.fractions.split(","))
        except ValueError:
            raise GroklabError(f"--fractions: expected three numbers like 0.7,0.15,0.15, got {self.fractions!r}")
        if len(values) != 3:
            raise GroklabError(f"--fractions: expected three numbers (train,val,test), got {len(values)}")
        return values  # type: ignore[return-value]


SEEDS_HELP = "train these model seeds as one group, e.g. 42,123,456; run folders OUT_DIR/seed42, ..."


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """`groklab run`: the main job; `groklab train` adds the data path."""

    seeds: str | None = field(default=None, metadata=doc(SEEDS_HELP))

    def seed_list(self) -> list[int]:
        text = self.seeds or ""
        try:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        except ValueError:
            raise GroklabError(f"--seeds: expected comma-separated integers, got {text!r}") from None
        if not seeds:
            raise GroklabError("--seeds: give at least one seed, e.g. --seeds 42,123,456")
        if len(set(seeds)) != len(seeds):
            raise GroklabError("--seeds: each seed once")
        return seeds


@dataclass(frozen=True, kw_only=True)
class TrainOptions(RunOptions):
    path: str | None = field(default=None, metadata=doc(
        "a text file to memorise (seed 003) or a data folder", positional=True))


@dataclass(frozen=True, kw_only=True)
class BackendOptions:
    """Where and how a sweep's engine groups train."""

    backend: Literal["local", "ray"] = field(default="local", metadata=doc(
        "local: engine groups in this process; ray: groups as Ray tasks, on this machine or a cluster "
        "(pip install 'groklab[ray]')"))
    address: str | None = field(default=None, metadata=doc("Ray cluster address", default_text="start a local Ray"))
    gpus_per_group: float = field(default=1.0, metadata=doc(
        "Ray: the GPU share each group asks for, e.g. 0.25 packs four groups on a GPU", parse=positive))
    max_group: int | None = field(default=None, metadata=doc(
        "at most this many runs in one engine group", parse=at_least(1), default_text="as many as fit"))
    max_runs: int = field(default=MAX_RUNS, metadata=doc(
        "refuse a spec that expands to more runs than this", parse=at_least(1)))
    concurrent_groups: int | None = field(default=None, metadata=doc(
        "local backend: engine groups trained at once, each in its own thread and CUDA stream", parse=at_least(1),
        default_text="1 on a CPU; on a GPU up to 8, each captured before any trains"))

    def backend_args(self) -> dict:
        """These fields alone (not a subclass's), as run_sweep's keyword arguments."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(BackendOptions)}


@dataclass(frozen=True, kw_only=True)
class SweepOptions(BackendOptions):
    spec: str = field(metadata=doc("sweep spec: a TOML file with [base], [grid], [zip] or [[experiment]] tables",
                                   positional=True))
    out: str = field(metadata=doc("sweep folder", "out_dir"))
    retry_failed: bool = field(default=False, metadata=doc("train failed runs again"))


@dataclass(frozen=True, kw_only=True)
class ReproduceOptions(BackendOptions):
    study: str = field(metadata=doc("seed-000, seed-003 or nanda (Nanda et al. 2023: a+b mod 113, full batch)",
                                    positional=True))
    out: str | None = field(default=None, metadata=doc("sweep folder", "out_dir", default_text="out/STUDY"))
    quick: bool = field(default=False, metadata=doc("a short version for a CPU try (fewer steps)"))


@dataclass(frozen=True, kw_only=True)
class ReportOptions:
    dir: str = field(metadata=doc("a sweep folder (sweep.json) or a run folder (config.json)", positional=True))
    open: bool = field(default=False, metadata=doc("open report.html in the web browser"))


RUN_HELP = "run folder (or a file inside it)"


def _check_device(device: str) -> None:
    if not is_device_name(device):
        raise GroklabError(f"--device: {DEVICE_HELP}, got {device!r}")


@dataclass(frozen=True, kw_only=True)
class SampleOptions:
    run: str | None = field(default=None, metadata=doc(RUN_HELP, positional=True))
    checkpoint: str | None = field(default=None, metadata=doc(
        "the same, seed 000's spelling (a file in the run directory)"))
    prompts: list[str] | None = field(default=None, metadata=doc(
        "prompts, e.g. \"30/74=\" (comma-separated or several)"))
    prompt: str | None = field(default=None, metadata=doc("one prompt (seed 003 spelling)"))
    max_new_tokens: int = field(default=8, metadata=doc("tokens to generate", "steps"))
    temperature: float = field(default=1.0, metadata=doc("softmax temperature; 0 = greedy"))
    top_k: int | None = field(default=None, metadata=doc("sample among the k likeliest", default_text="all"))
    seed: int = field(default=0, metadata=doc("sampling seed"))
    interactive: bool = field(default=False, metadata=doc("a prompt loop; an empty line or Ctrl-D ends it"))
    device: str = field(default="cpu", metadata=doc(f"where the model runs: {DEVICE_HELP}"))

    def __post_init__(self) -> None:
        if (self.run is None) == (self.checkpoint is None):
            raise GroklabError("give the run: a run directory (or a file in it), or --checkpoint PATH")
        _check_device(self.device)
        if not -(2**63) <= self.seed < 2**64:
            raise GroklabError(f"--seed must fit in 64 bits, got {self.seed}")
        if not self.temperature >= 0:  # also catches NaN
            raise GroklabError(f"--temperature must be >= 0, got {self.temperature}")
        if self.max_new_tokens < 0:
            raise GroklabError(f"--max_new_tokens must be >= 0, got {self.max_new_tokens}")

    @property
    def k(self) -> int | None:
        """top-k, or None for all tokens (0 or less means all, as before)."""
        return self.top_k if self.top_k and self.top_k > 0 else None


@dataclass(frozen=True, kw_only=True)
class EvaluateOptions:
    run: str = field(metadata=doc(RUN_HELP, positional=True))
    split: str = field(default="test", metadata=doc("train, val or test (comma-separated for several)"))
    json: bool = field(default=False, metadata=doc("print JSON lines"))
    device: str = field(default="cpu", metadata=doc(f"where the model runs: {DEVICE_HELP}"))

    def __post_init__(self) -> None:
        _check_device(self.device)


@dataclass(frozen=True, kw_only=True)
class AnalyzeOptions:
    run: str = field(metadata=doc("run folder (trained with --tokenizer number; --snapshots_per_decade or "
                                  "--snapshot_interval for curves over training)", positional=True))


@dataclass(frozen=True, kw_only=True)
class ExportOptions:
    run: str = field(metadata=doc(RUN_HELP, positional=True))
    format: Literal["hf", "module"] = field(default="hf", metadata=doc(
        "hf: GPT2LMHeadModel + tokenizer, for transformers and TransformerLens (pip install 'groklab[hf]'); "
        "module: a plain torch.nn.Module's weights"))
    out: str = field(metadata=doc("output folder (new, empty, or an earlier export)", "out_dir"))
