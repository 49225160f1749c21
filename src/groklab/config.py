"""Typed, validated configuration: the single source for CLI flags, config.json and (later) sweep specs.

Every field carries its help text in `metadata["help"]`; `cli_args.py` turns these dataclasses into argparse
flags, so a flag cannot exist in one place and not another. Seed-report spellings (`--max_iters`, `--prime`,
`--beta_1`, ...) are listed as `metadata["aliases"]`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_type_hints

from groklab.fields import ROLES, ConfigError, at_most, checked, doc, finite, require  # noqa: F401 (ROLES, ConfigError: public)


TokenizerKind = Literal["char", "number", "hybrid"]
LossOn = Literal["answer", "answer_only", "all"]
DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu", "hpu", "mtia")  # torch device types a run can train on
DEVICE_HELP = f"'auto' or a torch device ({', '.join(DEVICE_TYPES)}, optionally with ':N')"
COMPILED = " + torch.compile"  # how a run folder's engine path (meta.json) ends when its step ran compiled


def is_device_name(text: str) -> bool:
    """'auto', or a torch device type with an optional index ('cuda', 'cuda:1'); whether it exists is
    engine.device's question, asked when the run starts."""
    kind, colon, index = text.partition(":")
    return text == "auto" or (kind in DEVICE_TYPES and (not colon or index.isdigit()))

GradFilterKind = Literal["none", "ema", "ma"]
WeightDecayMode = Literal["decoupled", "l2"]
InitScheme = Literal["nanogpt", "torch", "nanda"]
Activation = Literal["gelu", "relu"]
DecayOn = Literal["weights", "all"]
WandbMode = Literal["online", "offline", "disabled"]
Precision = Literal["fp32", "tf32", "bf16"]
Verbosity = Literal["quiet", "normal", "verbose"]


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the nanoGPT-style decoder. Runs that differ here cannot share an engine group."""

    n_layer: int = field(default=2, metadata=doc("number of transformer blocks"))
    n_head: int = field(default=4, metadata=doc("attention heads per block"))
    n_embd: int = field(default=128, metadata=doc("embedding width (channels)"))
    block_size: int = field(
        default=0, metadata=doc("context length in tokens; 0 = the longest example in the data (equations)")
    )
    dropout: float = field(default=0.0, metadata=doc("dropout probability (0 keeps runs in a group exact)"))
    bias: bool = field(default=True, metadata=doc("biases in linear layers and LayerNorm, as nanoGPT"))
    tie_embeddings: bool = field(
        default=True, metadata=doc("the output head is the token embedding (nanoGPT); off: a head of its own "
                                   "(the Grokfast paper's model)")
    )
    embedding_init_std: float = field(
        default=0.02, metadata=doc("std of the token and position embeddings at init (nanoGPT: 0.02; "
                                   "torch.nn.Embedding, as in the Grokfast paper's code: 1.0)")
    )
    norm_residual: bool = field(
        default=False, metadata=doc("each block normalises the residual stream itself before attention "
                                    "(x = ln_1(x); x = x + attn(x)), as the Grokfast paper's code; off: "
                                    "nanoGPT's pre-norm (x = x + attn(ln_1(x)))")
    )
    init: InitScheme = field(
        default="nanogpt", metadata=doc("how linear layers start: 'nanogpt' (N(0, 0.02), residual projections "
                                        "scaled by 1/sqrt(2 n_layer), zero biases) or 'torch' (torch.nn's defaults: "
                                        "uniform ±1/sqrt(fan_in) weights and biases, the attention's in-projection "
                                        "Xavier-uniform with zero bias, as nn.MultiheadAttention; the Grokfast "
                                        "paper's code) or 'nanda' (every weight matrix N(0, 1/sqrt(n_embd)), an "
                                        "untied head N(0, 1/sqrt(vocab)), zero biases: Nanda et al. 2023's code); "
                                        "embeddings follow embedding_init_std either way")
    )
    activation: Activation = field(
        default="gelu", metadata=doc("the MLP's nonlinearity: 'gelu' (nanoGPT) or 'relu' (Nanda et al. 2023)")
    )
    layer_norm: bool = field(
        default=True, metadata=doc("LayerNorm before attention, MLP and head (nanoGPT); off: no LayerNorm at all, "
                                   "no gains or biases in the weights (Nanda et al. 2023)")
    )
    attention_bias: bool = field(
        default=True, metadata=doc("biases in the attention's projections (when bias is on); off: only the MLP "
                                   "has biases (Nanda et al. 2023)")
    )

    def __post_init__(self) -> None:
        finite(self)
        require(self.n_layer >= 1, "n_layer", f"must be at least 1, got {self.n_layer}")
        require(self.n_head >= 1, "n_head", f"must be at least 1, got {self.n_head}")
        require(self.n_embd >= 1, "n_embd", f"must be at least 1, got {self.n_embd}")
        require(
            self.n_embd % self.n_head == 0, "n_embd", f"{self.n_embd} is not divisible by n_head={self.n_head}"
        )
        require(self.block_size >= 0, "block_size", f"must be >= 0, got {self.block_size}")
        for name, limit in (("n_layer", 1024), ("n_head", 4096), ("n_embd", 65536), ("block_size", 65536)):
            at_most(getattr(self, name), limit, name)
        require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        require(0.0 < self.embedding_init_std <= 10.0, "embedding_init_std",
                 f"must be in (0, 10], got {self.embedding_init_std}")
        require(self.init in get_args(InitScheme), "init", f"'nanogpt', 'torch' or 'nanda', got {self.init!r}")
        require(self.activation in get_args(Activation), "activation", f"'gelu' or 'relu', got {self.activation!r}")
        require(self.layer_norm or not self.norm_residual, "norm_residual",
                 "needs layer_norm (without LayerNorm the block has nothing to normalise the stream with)")


@dataclass(frozen=True)
class DataConfig:
    """Where the equations come from and how they are tokenised and masked."""

    data_dir: str | None = field(
        default=None, metadata=doc("folder with train.txt/val.txt[/test.txt] (as `groklab data` writes it)",
                                   role="source")
    )
    text_file: str | None = field(
        default=None, metadata=doc("plain text to memorise (seed 003's sanity run); loss on every token",
                                   role="source")
    )
    operators: str | None = field(
        default=None, metadata=doc("build equations on the fly for these ops, e.g. '/' or '+,-'", "op", "ops",
                                   role="source")
    )
    prime: int | None = field(default=None, metadata=doc("modulus p for on-the-fly data", "p", role="source"))
    num_samples: int | None = field(
        default=None, metadata=doc("on-the-fly data: N distinct random equations instead of all pairs",
                                   role="source")
    )
    train_fraction: float | None = field(
        default=None, metadata=doc("on-the-fly data: train share", role="source",
                                   default_text="0.7, or 0.4 with num_samples")
    )
    val_fraction: float | None = field(
        default=None, metadata=doc("on-the-fly data: val share", role="source",
                                   default_text="0.15, or 0.4 with num_samples")
    )
    data_seed: int = field(default=0, metadata=doc("seed of the train/val/test split (not the model's seed)",
                                                   role="source"))
    tokenizer: TokenizerKind = field(
        default="char", metadata=doc("'char': one token per character (the seeds); 'number': one per number; "
                                     "'hybrid': the operands' digits one a token, the answer one token")
    )
    loss_on: LossOn = field(
        default="answer", metadata=doc("'answer': loss on the tokens after '=' (the answer and the end of the "
                                       "line); 'answer_only': the answer's tokens alone, not the end of the line "
                                       "(the Grokfast paper's code: one loss term, the answer); 'all': every token")
    )
    mask_first_n: int | None = field(
        default=None, metadata=doc("loss on every token except the first N (overrides loss_on)")
    )

    def __post_init__(self) -> None:
        finite(self)
        sources = [s for s in (self.data_dir, self.text_file, self.operators) if s is not None]
        require(len(sources) <= 1, "data", "give only one of --data_dir, a text file, or --operators/--prime")
        require(
            (self.operators is None) == (self.prime is None),
            "prime" if self.prime is None else "operators",
            "--operators and --prime go together",
        )
        require(self.tokenizer in get_args(TokenizerKind), "tokenizer",
                 f"'char', 'number' or 'hybrid', got {self.tokenizer!r}")
        require(self.loss_on in get_args(LossOn), "loss_on", f"'answer', 'answer_only' or 'all', got {self.loss_on!r}")
        require(
            self.mask_first_n is None or self.mask_first_n >= 0, "mask_first_n", f"must be >= 0, got {self.mask_first_n}"
        )
        require(
            not (self.text_file is not None and self.tokenizer != "char"),
            "tokenizer",
            "a plain text file needs the char tokenizer",
        )

    @property
    def has_source(self) -> bool:
        return any(s is not None for s in (self.data_dir, self.text_file, self.operators))


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with decoupled weight decay on 2-D weights (matrices and embeddings), none on biases/LayerNorm;
    or Adam with the decay as an L2 term in the gradient (`weight_decay_mode="l2"`)."""

    learning_rate: float = field(default=1e-3, metadata=doc("AdamW learning rate", "lr"))
    weight_decay: float = field(default=0.1, metadata=doc("decoupled weight decay on 2-D weights", "wd"))
    beta1: float = field(default=0.9, metadata=doc("AdamW beta1", "beta_1"))
    beta2: float = field(default=0.95, metadata=doc("AdamW beta2", "beta_2"))
    eps: float = field(default=1e-8, metadata=doc("AdamW epsilon"))
    grad_clip: float = field(default=1.0, metadata=doc("clip each run's gradient norm to this; 0 = off"))
    warmup_steps: int = field(default=0, metadata=doc("linear learning-rate warm-up steps (then constant)",
                                                      "warmup_iters"))
    lr_decay_steps: int = field(
        default=0, metadata=doc("cosine learning-rate decay as nanoGPT's decay_lr: after the warm-up, from "
                                "learning_rate down to min_lr at this step, min_lr from then on; 0 = no decay",
                                "lr_decay_iters")
    )
    min_lr: float | None = field(
        default=None, metadata=doc("where the cosine decay ends",
                                   default_text="learning_rate / 10, nanoGPT's advice")
    )
    weight_decay_mode: WeightDecayMode = field(
        default="decoupled", metadata=doc("'decoupled': AdamW's decay of the weights; 'l2': wd * weight added to the "
                                          "gradient before Adam's moments, as torch.optim.Adam(weight_decay=...) "
                                          "(the Grokfast paper's code)")
    )
    decay_on: DecayOn = field(
        default="weights", metadata=doc("which parameters weight decay acts on: 'weights' (2-D weights, nanoGPT's "
                                        "rule) or 'all' (biases and LayerNorm too, as torch.optim given "
                                        "model.parameters(); the Grokfast paper's code)")
    )
    grokfast: GradFilterKind = field(
        default="none", metadata=doc("Grokfast gradient filter (Lee et al. 2024): 'ema', 'ma' (moving average) or 'none'")
    )
    grokfast_alpha: float = field(default=0.98, metadata=doc("Grokfast EMA: momentum of the gradient average"))
    grokfast_lamb: float = field(default=2.0, metadata=doc("Grokfast: amplification of the filtered gradient"))
    grokfast_window: int = field(default=100, metadata=doc("Grokfast MA: number of past gradients averaged"))
    orthograd: bool = field(
        default=False, metadata=doc("⊥Grad (Prieto et al. 2025): drop each weight tensor's gradient component "
                                    "along its weights before the optimizer step")
    )

    @property
    def final_lr(self) -> float:
        """The rate the cosine decay ends at (min_lr, or learning_rate / 10 when unset)."""
        return self.learning_rate / 10 if self.min_lr is None else self.min_lr

    def __post_init__(self) -> None:
        finite(self)
        require(self.learning_rate > 0, "learning_rate", f"must be > 0, got {self.learning_rate}")
        require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        require(0 <= self.beta1 < 1, "beta1", f"must be in [0, 1), got {self.beta1}")
        require(0 <= self.beta2 < 1, "beta2", f"must be in [0, 1), got {self.beta2}")
        require(self.eps > 0, "eps", f"must be > 0, got {self.eps}")
        require(self.grad_clip >= 0, "grad_clip", f"must be >= 0, got {self.grad_clip}")
        require(self.warmup_steps >= 0, "warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        require(self.lr_decay_steps == 0 or self.lr_decay_steps > self.warmup_steps, "lr_decay_steps",
                 f"must be 0 (no decay) or more than warmup_steps ({self.warmup_steps}), got {self.lr_decay_steps}")
        require(self.min_lr is None or 0 <= self.min_lr <= self.learning_rate, "min_lr",
                 f"must be in [0, learning_rate {self.learning_rate}], got {self.min_lr}")
        require(self.weight_decay_mode in get_args(WeightDecayMode), "weight_decay_mode",
                 f"'decoupled' or 'l2', got {self.weight_decay_mode!r}")
        require(self.decay_on in get_args(DecayOn), "decay_on", f"'weights' or 'all', got {self.decay_on!r}")
        require(self.grokfast in get_args(GradFilterKind), "grokfast", f"'none', 'ema' or 'ma', got {self.grokfast!r}")
        require(0 <= self.grokfast_alpha < 1, "grokfast_alpha", f"must be in [0, 1), got {self.grokfast_alpha}")
        require(self.grokfast_lamb >= 0, "grokfast_lamb", f"must be >= 0, got {self.grokfast_lamb}")
        require(self.grokfast_window >= 1, "grokfast_window", f"must be at least 1, got {self.grokfast_window}")
        at_most(self.grokfast_window, 100_000, "grokfast_window")


@dataclass(frozen=True)
class TrainConfig:
    """The loop: steps, batches, evaluation schedule, checkpoints, output."""

    out_dir: str = field(default="out/run", metadata=doc("run directory (config, metrics, weights, curves)",
                                                         role="how"))
    max_steps: int = field(default=5000, metadata=doc("optimizer steps", "max_iters"))
    batch_size: int = field(default=64, metadata=doc("examples per optimizer step (sampled with replacement); 0 = "
                                                     "full batch: every step takes the whole train split, in "
                                                     "order (Nanda et al. 2023)"))
    seed: int = field(default=42, metadata=doc("seed of model init and batch order (not the data split)"))
    eval_points_per_decade: int = field(
        default=16, metadata=doc("log-spaced evaluations per decade of steps (plus the last step)")
    )
    eval_interval: int = field(default=0, metadata=doc("also evaluate every N steps (seed 003); 0 = off"))
    log_interval: int = field(default=0, metadata=doc("print the batch loss every N steps; 0 = only at evals",
                                                       role="how"))
    checkpoint_interval: int = field(default=1000, metadata=doc("save the loop state every N steps (and at the end)",
                                                                 role="how"))
    grok_threshold: float = field(default=0.99, metadata=doc("val accuracy that counts as grokked (steps_to_grok)"))
    snapshots_per_decade: int = field(
        default=0, metadata=doc("keep the weights at this many log-spaced steps a decade in OUT_DIR/snapshots "
                                "(for `groklab analyze` over training); 0 = only the final weights")
    )
    early_stop_evals: int = field(
        default=0, metadata=doc("stop once val accuracy has stayed >= grok_threshold for this many evaluations; 0 = off")
    )
    device: str = field(default="auto", metadata=doc(
        "'auto' (CUDA if present, else the CPU), or a torch device: 'cpu', 'cuda', 'cuda:1', 'mps', ... (the step is "
        "captured as a CUDA graph on CUDA devices only; elsewhere it runs eagerly)", role="how"))
    cuda_graph: bool = field(default=True, metadata=doc("on a GPU, run each training step as one captured CUDA graph",
                                                        role="how"))
    compile: bool | None = field(default=None, metadata=doc(
        "torch.compile the training step (fuses its kernels: about 2x faster on a GPU). The first start on a machine "
        "compiles for seconds (11 s on an H200), later ones load the compiled step from an on-disk cache (3 s); "
        "where compiling fails the run trains uncompiled and says why", role="how",
        default_text="true on a CUDA device, false elsewhere"))
    resume: bool = field(default=False, metadata=doc("continue the run in out_dir from its last checkpoint (the same "
                                                     "command does that too; --resume also insists there is one)",
                                                     role="how"))
    progress: bool = field(default=True, metadata=doc("show a progress bar (off when not a terminal)", role="how"))
    plot: bool = field(default=True, metadata=doc("write curves.png at the end", role="how"))
    tensorboard: bool = field(default=False, metadata=doc(
        "write TensorBoard event files to OUT_DIR/tb at each evaluation: losses, accuracies, weight norm, "
        "learning rate (pip install 'groklab[tb]')", role="how"))
    wandb: bool = field(default=False, metadata=doc(
        "log each run to Weights & Biases as a W&B run of its own: its config, every evaluation, the grokking "
        "summary; a sweep's runs form one W&B group (pip install 'groklab[wandb]')", role="how"))
    wandb_project: str = field(default="groklab", metadata=doc("W&B project the runs are logged to", role="how"))
    wandb_group: str = field(default="", metadata=doc("W&B group of the runs", role="how",
                                                      default_text="the sweep's name in a sweep, none for a single run"))
    wandb_mode: WandbMode | None = field(default=None, metadata=doc(
        "W&B mode: 'online', 'offline' (files in OUT_DIR/wandb, uploaded later with `wandb sync`) or 'disabled'",
        role="how", default_text="the WANDB_MODE environment variable, else online"))
    precision: Precision = field(default="fp32", metadata=doc(
        "arithmetic of the training step: 'fp32' (exact); 'tf32': float32 everywhere, the matrix "
        "products of the captured CUDA graph on the tensor cores with TF32 inputs (a CPU has none: fp32 there); "
        "'bf16': matrix products autocast to bfloat16, float32 master weights, optimizer state, softmax, loss "
        "and update (on a CPU only where it has bf16 instructions). Evaluation is float32 always; meta.json records "
        "what ran"))
    verbosity: Verbosity = field(default="normal", metadata=doc(
        "what a run prints: 'quiet' (-q: the result and failures only, no progress bar), 'normal' (a short "
        "header, the progress bar; evaluation lines only when the bar is off, and at --log_interval), 'verbose' "
        "(-v: also the whole config and every evaluation)", role="how",
        shortcuts={"quiet": ("-q", "--quiet"), "verbose": ("-v", "--verbose")}))
    snapshot_interval: int = field(  # "is": a snapshot step is an evaluation step too
        default=0, metadata=doc("also keep the weights every N steps in OUT_DIR/snapshots (linearly spaced, "
                                "for the phases of `groklab analyze`); 0 = off")
    )

    def __post_init__(self) -> None:
        finite(self)
        require(bool(self.out_dir.strip()), "out_dir", "must name a folder, got an empty string")
        require(self.max_steps >= 1, "max_steps", f"must be at least 1, got {self.max_steps}")
        require(self.batch_size >= 0, "batch_size", f"must be at least 1, or 0 for full batch, got {self.batch_size}")
        for name, limit in (("max_steps", 10**12), ("batch_size", 2**20), ("eval_points_per_decade", 1000),
                            ("snapshots_per_decade", 1000)):
            at_most(getattr(self, name), limit, name)
        require(-(2**63) <= self.seed < 2**63, "seed",
                 f"must fit in 64 bits (a signed int64, as the engine holds seeds), got {self.seed}")
        require(
            self.eval_points_per_decade >= 1,
            "eval_points_per_decade",
            f"must be at least 1, got {self.eval_points_per_decade}",
        )
        require(self.eval_interval >= 0, "eval_interval", f"must be >= 0, got {self.eval_interval}")
        require(self.log_interval >= 0, "log_interval", f"must be >= 0, got {self.log_interval}")
        require(self.checkpoint_interval >= 1, "checkpoint_interval", f"must be >= 1, got {self.checkpoint_interval}")
        require(0 < self.grok_threshold <= 1, "grok_threshold", f"must be in (0, 1], got {self.grok_threshold}")
        require(self.early_stop_evals >= 0, "early_stop_evals", f"must be >= 0, got {self.early_stop_evals}")
        require(self.snapshots_per_decade >= 0, "snapshots_per_decade", f"must be >= 0, got {self.snapshots_per_decade}")
        require(self.snapshot_interval >= 0, "snapshot_interval", f"must be >= 0, got {self.snapshot_interval}")
        require(is_device_name(self.device), "device", f"{DEVICE_HELP}, got {self.device!r}")
        require(bool(self.wandb_project.strip()) and not any(c in self.wandb_project for c in "/\\#?%:"),
                 "wandb_project", f"must name a W&B project (no / \\ # ? % :), got {self.wandb_project!r}")
        require(self.wandb_mode is None or self.wandb_mode in get_args(WandbMode), "wandb_mode",
                 f"'online', 'offline' or 'disabled', got {self.wandb_mode!r}")
        require(self.precision in get_args(Precision), "precision",
                 f"'fp32', 'tf32' or 'bf16', got {self.precision!r}")
        require(self.verbosity in get_args(Verbosity), "verbosity",
                f"'quiet', 'normal' or 'verbose', got {self.verbosity!r}")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one training run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        parts: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            sub = d.get(f.name, {})
            if not isinstance(sub, dict):
                raise ConfigError(f"{f.name}: expected an object of fields, got {type(sub).__name__}")
            sub_cls = f.default_factory  # type: ignore[misc]
            known = {g.name for g in dataclasses.fields(sub_cls)}
            unknown = set(sub) - known
            if unknown:
                raise ConfigError(f"{f.name}: unknown field(s) {', '.join(sorted(unknown))}")
            # typed as the flags and specs are: a file's "compile": "banana" is refused, not carried as a truth
            parts[f.name] = sub_cls(**{k: checked(k, _field_table()[k][2], v) for k, v in sub.items()})
        return cls(**parts)

    def replace(self, **changes: Any) -> "RunConfig":
        """Replace fields by their flat name or alias (e.g. seed=1, n_layer=3, p=113), whichever section holds
        them; values are type-checked (a sweep spec's "3" for an integer field is an error, not a string)."""
        sections = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        per_section: dict[str, dict[str, Any]] = {}
        for name, value in changes.items():
            owner, canonical, tp = field_info(name)
            per_section.setdefault(owner, {})[canonical] = checked(canonical, tp, value)
        for owner, fields in per_section.items():  # one replace a section: validated as a whole
            sections[owner] = dataclasses.replace(sections[owner], **fields)
        return RunConfig(**sections)


SECTION_CLASSES: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig,
                                    "train": TrainConfig}


@functools.cache
def _field_table() -> dict[str, tuple[str, str, Any]]:
    """Flat name or alias -> (section, field name, type). Built once: a sweep of thousands of runs asks for it
    per field per run."""
    table: dict[str, tuple[str, str, Any]] = {}
    for section, cls in SECTION_CLASSES.items():
        hints = get_type_hints(cls)
        for f in dataclasses.fields(cls):
            for name in (f.name, *f.metadata.get("aliases", ())):
                table[name] = (section, f.name, hints[f.name])
    return table


@functools.cache
def field_roles() -> dict[str, str]:
    """Canonical flat field name -> its role (ROLES)."""
    return {f.name: f.metadata.get("role", "is") for cls in SECTION_CLASSES.values() for f in dataclasses.fields(cls)}


def flat_fields(cfg: RunConfig) -> dict[str, Any]:
    """Every field of every section, by its canonical flat name."""
    return {f.name: getattr(getattr(cfg, section), f.name)
            for section, cls in SECTION_CLASSES.items() for f in dataclasses.fields(cls)}


def differences(old: RunConfig, new: RunConfig, roles: tuple[str, ...] = ("is", "source")) -> list[tuple[str, Any, Any]]:
    """(field, old value, new value) for each field of these roles that differs, in declaration order."""
    a, b, role = flat_fields(old), flat_fields(new), field_roles()
    return [(k, a[k], b[k]) for k in a if role[k] in roles and a[k] != b[k]]


def field_info(name: str) -> tuple[str, str, Any]:
    """(section, canonical name, type) of a flat config field or alias; ConfigError suggests the closest."""
    table = _field_table()
    key = name.replace("-", "_") if isinstance(name, str) else name
    if key not in table:
        close = difflib.get_close_matches(str(key), table, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{name}: no such config field{hint}")
    return table[key]
