"""A trained run outside groklab: a plain `torch.nn.Module`, a Hugging Face `GPT2LMHeadModel` with a tokenizer
over the run's vocabulary, and TransformerLens's bridge over that model. Each gives the same logits as
groklab's own forward.

groklab stores linear weights (in, out), which is the layout of GPT-2's Conv1D, so the Hugging Face export
copies them as they are; the plain module uses `nn.Linear` (out, in) and takes their transpose. Options of
a run with no GPT-2 equivalent are refused for `hf` (naming the option); the plain module runs them.

Shape legend: B batch, T time, C channels (n_embd), H heads, V vocabulary.
`transformers` and `transformer-lens` are extras (`pip install 'groklab[hf]'`, `'groklab[lens]'`), imported
only by the function that needs them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from groklab.config import ModelConfig
from groklab.errors import GroklabError
from groklab.extras import need
from groklab.files import FILE_MODE, write_json
from groklab.data.tokenizer import Tokenizer, tokenizer_from_dict

MARK_FILE = "groklab_export.json"  # written last: a folder with it was written by `groklab export`
BUILD_SUFFIX, BUILD_TAG = ".groklab-export-partial", ".groklab-export-partial"  # the folder an export is built in
MODULE_WEIGHTS = "module.safetensors"
MODULE_FORMAT = "groklab-module/1"
UNK = "<unk>"  # the exported tokenizer's one extra entry, outside the model's vocabulary (id V)
Format = Literal["hf", "module"]

# ModelConfig fields that do not change what a trained model computes in eval mode
FORWARD_NEUTRAL = frozenset({"block_size", "dropout", "embedding_init_std", "init"})
# fields this module reproduces; for hf, those GPT-2 has too (bias off: zero biases are the same sums)
MODULE_OPTIONS = frozenset({"n_layer", "n_head", "n_embd", "bias", "tie_embeddings", "norm_residual"})
HF_OPTIONS = MODULE_OPTIONS - {"norm_residual"}


class RunLike(Protocol):
    """What the exports read of a loaded run (sample.LoadedRun): model (E = 1), tokenizer, step."""

    model: Any
    tokenizer: Tokenizer
    step: int


class ExportError(GroklabError):
    """A run that cannot be exported to the asked format; the message names the option."""


def check_exportable(cfg: ModelConfig, fmt: Format) -> None:
    """Refuse a model option the format cannot reproduce, naming it (an option added to ModelConfig later is
    refused until it is handled here, so an export never silently computes something else)."""
    handled = HF_OPTIONS if fmt == "hf" else MODULE_OPTIONS
    default = ModelConfig()
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name in FORWARD_NEUTRAL or f.name in handled or value == getattr(default, f.name):
            continue
        if fmt == "module":
            raise ExportError(f"{f.name}={value!r}: the plain module does not compute this option yet, so the run "
                              "cannot be exported")
        hint = " (export it with --format module, a plain torch module that has it)" if f.name in MODULE_OPTIONS else ""
        raise ExportError(f"{f.name}={value!r}: GPT-2 has no such option, so the run cannot be exported to "
                          f"Hugging Face{hint}")


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        C = cfg.n_embd
        self.n_head = cfg.n_head
        self.c_attn = nn.Linear(C, 3 * C, bias=cfg.bias)
        self.c_proj = nn.Linear(C, C, bias=cfg.bias)
        self.attn_dropout = nn.Dropout(cfg.dropout)
        self.pattern = nn.Identity()  # a hook point: its output is the attention pattern (B, H, T, T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, H, T, D)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))  # (B, H, T, T)
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        att = self.pattern(att.masked_fill(~causal, float("-inf")).softmax(dim=-1))
        y = (self.attn_dropout(att) @ v).transpose(1, 2).reshape(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        C = cfg.n_embd
        self.c_fc = nn.Linear(C, 4 * C, bias=cfg.bias)
        self.act = nn.GELU()  # exact (erf) GELU, as groklab's F.gelu; a hook here sees the MLP's neurons
        self.c_proj = nn.Linear(4 * C, C, bias=cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.act(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm_residual = cfg.norm_residual
        self.ln_1 = nn.LayerNorm(cfg.n_embd, eps=1e-5, bias=cfg.bias)
        self.attn = SelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, eps=1e-5, bias=cfg.bias)
        self.mlp = MLP(cfg)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = self.ln_1(x)
        x = normed if self.norm_residual else x  # the Grokfast code's block adds to the normalised stream
        x = x + self.dropout(self.attn(normed))
        return x + self.dropout(self.mlp(self.ln_2(x)))


class GroklabGPT(nn.Module):
    """One groklab run as a plain module: token ids (B, T) -> logits (B, T, V). Parameter names follow
    groklab's (and nanoGPT's): wte, wpe, h.{i}.ln_1, h.{i}.attn.c_attn, ..., ln_f, lm_head (untied runs)."""

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        check_exportable(cfg, "module")
        if cfg.block_size < 1:
            raise ExportError("block_size must be resolved (>= 1) before building the module")
        self.cfg, self.vocab_size = cfg, vocab_size
        self.wte = nn.Embedding(vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, eps=1e-5, bias=cfg.bias)
        self.lm_head = None if cfg.tie_embeddings else nn.Linear(cfg.n_embd, vocab_size, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        if T > self.cfg.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than block_size {self.cfg.block_size}")
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(T, device=idx.device)))  # (B, T, C)
        for block in self.h:
            x = block(x)
        x = self.ln_f(x)
        return self.lm_head(x) if self.lm_head is not None else x @ self.wte.weight.T  # (B, T, V)

    @torch.no_grad()
    def load_groklab_state(self, state: dict[str, torch.Tensor]) -> "GroklabGPT":
        """Copy one run's weights as groklab stores them (GPT.member_state, model.safetensors)."""
        ours = dict(self.named_parameters())
        expected = {_groklab_name(n) for n in ours}
        if set(state) != expected:
            missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
            raise ExportError(f"the weights do not fit the model: missing {missing[:3]}, unexpected {extra[:3]}")
        for name, p in ours.items():
            t = state[_groklab_name(name)]
            p.copy_(t.T if _is_linear(name) else t)  # groklab's (in, out) -> nn.Linear's (out, in)
        return self


def _is_linear(name: str) -> bool:
    return name == "lm_head.weight" or (name.endswith(".weight") and (".attn." in name or ".mlp." in name))


def _groklab_name(name: str) -> str:
    """This module's parameter name -> groklab's: the embeddings and the head are bare tensors there."""
    return name.removesuffix(".weight") if name in ("wte.weight", "wpe.weight", "lm_head.weight") else name


def _model_config(run: RunLike) -> ModelConfig:
    return run.model.cfg  # block_size resolved from the weights by load_run


def to_module(run: RunLike) -> GroklabGPT:
    """The run as a plain `nn.Module` in eval mode, on the CPU (`.to(device)` as any module)."""
    module = GroklabGPT(_model_config(run), run.tokenizer.vocab_size)
    return module.load_groklab_state(run.model.member_state(0)).eval()


def _eos_token(tok: Tokenizer) -> str | None:
    return "\n" if "\n" in tok.tokens else None  # an equation ends at its newline token


def to_hf_tokenizer(tok: Tokenizer):
    """A `transformers` fast tokenizer with the run's ids (token i is groklab's token i) that works fully
    offline: a `tokenizers` WordLevel model, text split into characters (char) or into numbers and symbols
    (number). Text outside the vocabulary encodes to <unk>, id V, which the model (V tokens) refuses."""
    need("transformers", "transformers", "hf", "the Hugging Face export")
    from tokenizers import Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as Backend
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(tok.tokens)}
    vocab[UNK] = len(vocab)
    backend = Backend(models.WordLevel(vocab, unk_token=UNK))
    pattern = r"[0-9]+|[\s\S]" if tok.kind == "number" else r"[\s\S]"
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    backend.decoder = decoders.Fuse()  # tokens are joined as they are, no spaces between
    eos = _eos_token(tok)
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token=UNK, eos_token=eos, pad_token=eos,
                                   model_max_length=10**6)


def hf_config(cfg: ModelConfig, vocab_size: int, eos_id: int | None, attn_implementation: str = "eager"):
    need("transformers", "transformers", "hf", "the Hugging Face export")
    from transformers import GPT2Config

    check_exportable(cfg, "hf")
    return GPT2Config(
        vocab_size=vocab_size, n_positions=cfg.block_size, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
        n_head=cfg.n_head, n_inner=4 * cfg.n_embd, activation_function="gelu",  # exact GELU, not gelu_new
        resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout, layer_norm_epsilon=1e-5,
        tie_word_embeddings=cfg.tie_embeddings, bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=eos_id,
        attn_implementation=attn_implementation,
    )


def hf_state(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """groklab's weights under GPT2LMHeadModel's names; biases a bias-free run lacks are zeros."""
    out = {"transformer.wte.weight": state["wte"], "transformer.wpe.weight": state["wpe"]}
    C = cfg.n_embd
    widths = {"ln_1": C, "attn.c_attn": 3 * C, "attn.c_proj": C, "ln_2": C, "mlp.c_fc": 4 * C, "mlp.c_proj": C}
    prefixes = [f"h.{i}.{part}" for i in range(cfg.n_layer) for part in widths] + ["ln_f"]
    for prefix in prefixes:
        out[f"transformer.{prefix}.weight"] = state[f"{prefix}.weight"]  # Conv1D: (in, out), as groklab's
        width = widths.get(prefix.split(".", 2)[-1], C)
        out[f"transformer.{prefix}.bias"] = state.get(f"{prefix}.bias", torch.zeros(width))
    out["lm_head.weight"] = state["lm_head"].T if "lm_head" in state else state["wte"]  # (V, C)
    return {k: v.contiguous() for k, v in out.items()}


def to_hf(run: RunLike, attn_implementation: str = "eager"):
    """(GPT2LMHeadModel in eval mode, its tokenizer). Eager attention by default: the same sums as
    groklab's (sdpa differs in the last bits) and what TransformerLens's hooks need."""
    need("transformers", "transformers", "hf", "the Hugging Face export")
    from transformers import GPT2LMHeadModel

    cfg = _model_config(run)
    tokenizer = to_hf_tokenizer(run.tokenizer)
    eos = _eos_token(run.tokenizer)
    config = hf_config(cfg, run.tokenizer.vocab_size, None if eos is None else run.tokenizer.tokens.index(eos),
                       attn_implementation)
    model = GPT2LMHeadModel(config)
    missing, unexpected = model.load_state_dict(hf_state(run.model.member_state(0), cfg), strict=False)
    missing = [k for k in missing if not (cfg.tie_embeddings and k == "lm_head.weight")]
    if missing or unexpected:  # a transformers release that renamed GPT-2's parameters
        raise ExportError(f"transformers' GPT-2 did not take the weights: missing {missing[:3]}, "
                          f"unexpected {unexpected[:3]}")
    if cfg.tie_embeddings:
        model.tie_weights()
    return model.eval(), tokenizer


def to_lens(run: RunLike, device: str | torch.device = "cpu"):
    """TransformerLens's TransformerBridge over the run's Hugging Face model, with its tokenizer passed in
    (so nothing is fetched from the hub); strings are tokenized without a BOS token, as groklab does."""
    need("transformer_lens", "transformer-lens", "lens", "TransformerLens's bridge")
    from transformer_lens.model_bridge import TransformerBridge

    model, tokenizer = to_hf(run)
    bridge = TransformerBridge.boot_transformers("groklab", hf_model=model, tokenizer=tokenizer, device=device)
    bridge.cfg.default_prepend_bos = False
    return bridge


def _earlier_export(out: Path) -> set[str]:
    """An empty or new folder (no files), or one an earlier export wrote: the files it wrote (a file the user put
    beside them is not among them and stays). Any other folder is refused."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file; choose an empty folder")
    present = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if present and MARK_FILE not in present:
        shown = ", ".join(present[:8]) + (f", ... ({len(present)} in all)" if len(present) > 8 else "")
        raise ExportError(f"--out {out} already holds files groklab did not export ({shown}); choose an empty folder")
    if not present:
        return set()
    try:
        written = json.loads((out / MARK_FILE).read_text(encoding="utf-8"))["files"]
        return {name for name in written if isinstance(name, str) and "/" not in name and name not in ("", ".", "..")}
    except (OSError, ValueError, KeyError, TypeError):
        raise ExportError(f"--out {out}: {MARK_FILE} is damaged; choose an empty folder") from None


def _build_folder(out: Path) -> Path:
    """A new, empty folder beside `out` that the export is written into before it replaces the earlier one (one
    left by a killed export is ours by its tag file, and removed)."""
    out = out.absolute()  # "." has no name of its own
    build = out.parent / f".{out.name}{BUILD_SUFFIX}"
    if build.exists():
        if not (build / BUILD_TAG).is_file():
            raise ExportError(f"--out {out}: {build} is in the way (groklab did not make it); move it away")
        shutil.rmtree(build)
    build.mkdir(parents=True)
    (build / BUILD_TAG).touch()
    return build


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM wait while the finished export replaces the earlier one (a few renames), then are
    delivered to the handler that was there: an interrupt lands before the swap or after it, never inside."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: got.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        if got:
            signal.raise_signal(got[0])


def _swap_in(build: Path, out: Path, files: list[str], earlier: set[str]) -> None:
    """The new export's files into `out` (its mark last, replacing the earlier mark whole), then the earlier
    export's files it no longer has; the user's own files beside them stay."""
    out.mkdir(parents=True, exist_ok=True)
    for name in files:
        os.replace(build / name, out / name)
    os.replace(build / MARK_FILE, out / MARK_FILE)
    for name in sorted(earlier - set(files) - {MARK_FILE}):
        (out / name).unlink(missing_ok=True)


def export_run(run: RunLike, fmt: Format, out: str | Path, source: str = "") -> Path:
    """Write the run to `out`: `hf` as a Hugging Face model folder (config.json, model.safetensors, the
    tokenizer) that `GPT2LMHeadModel.from_pretrained(out)` loads offline; `module` as module.safetensors
    (the nn.Module's state_dict) and the model config and vocabulary (`load_module(out)`).

    The export is written whole into a folder beside `out` first, then moved in with signals held: an
    interrupt at any point leaves the earlier export (or nothing) as it was, and the same command redoes it."""
    if fmt not in ("hf", "module"):
        raise ExportError(f"--format must be 'hf' or 'module', got {fmt!r}")
    cfg = _model_config(run)
    check_exportable(cfg, fmt)
    if fmt == "hf":
        need("transformers", "transformers", "hf", "the Hugging Face export")
    out = Path(out)
    earlier = _earlier_export(out)
    build = _build_folder(out)
    try:
        if fmt == "hf":
            model, tokenizer = to_hf(run)
            model.save_pretrained(build)
            tokenizer.save_pretrained(build)
        else:
            save_file(to_module(run).state_dict(), str(build / MODULE_WEIGHTS), metadata={"format": MODULE_FORMAT})
        files = sorted(p.name for p in build.iterdir() if p.is_file() and p.name != BUILD_TAG)  # what a re-export removes
        for name in files:  # safetensors writes its files 0600: they get what the umask gives, as every file here
            os.chmod(build / name, FILE_MODE)
        write_json(build / MARK_FILE, {"format": fmt, "source": source, "step": run.step,
                                       "model": dataclasses.asdict(cfg), "vocab": run.tokenizer.to_dict(),
                                       "files": files})
        with _signals_deferred():
            _swap_in(build, out, files, earlier)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return out


def load_module(folder: str | Path) -> tuple[GroklabGPT, Tokenizer]:
    """A folder written by `groklab export --format module` -> (the module in eval mode, the tokenizer)."""
    folder = Path(folder)
    try:
        mark = json.loads((folder / MARK_FILE).read_text(encoding="utf-8"))
        cfg, tok = ModelConfig(**mark["model"]), tokenizer_from_dict(mark["vocab"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ExportError(f"{folder}: not a groklab module export ({exc})") from None
    if mark.get("format") != "module":
        raise ExportError(f"{folder}: holds a {mark.get('format')!r} export, not a module")
    module = GroklabGPT(cfg, tok.vocab_size)
    module.load_state_dict(load_file(str(folder / MODULE_WEIGHTS)))
    return module.eval(), tok
