"""A nanoGPT-style decoder that holds E independent runs at once.

Shape legend: E runs (group members), B batch, T time, C channels (n_embd), H heads, D head size (C / H),
V vocabulary, N parameters of one run.

All weights of all runs live in one flat buffer `flat` of shape (E, N); every named parameter is a leaf
tensor that is a *view* of its slice, and its `.grad` is a view of the same slice of `grad`. The engine
writes all gradients into the flat buffer with one cat (a plain backward() accumulates into the same views),
so the optimizer, clipping and norms are a handful of ops over one (E, N) tensor whatever the depth of the
model, and a single run is simply E = 1. Weights are stored (in, out) so a linear layer is one batched
matmul over E.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from groklab.config import ModelConfig


# Parameters of E > 1 runs are strided views (row stride N), so autograd warns that their .grad "does not
# obey the gradient layout contract"; it still adds in place into our .grad view, which is what we want.
warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")


@dataclass(frozen=True)
class ParamSpec:
    """One named tensor of a run: its shape, where it sits in the flat row, and how it is initialised."""

    name: str
    shape: tuple[int, ...]
    offset: int
    decay: bool  # nanoGPT's rule: 2-D weights (matrices, embeddings) decay; biases and LayerNorm gains do not
    init_std: float  # N(0, init_std); 0 means uniform (init_bound) or else a constant (init_value)
    init_value: float = 0.0
    init_bound: float = 0.0  # U(-init_bound, init_bound) when init_std is 0

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def param_layout(cfg: ModelConfig, vocab_size: int) -> list[ParamSpec]:
    """The parameters of one run, in a fixed order, initialised as cfg.init says (tied input/output embedding
    unless cfg.tie_embeddings is off, which adds a head "lm_head" (C, V); no LayerNorm tensors at all when
    cfg.layer_norm is off; no attention biases when cfg.attention_bias is off)."""
    C, L = cfg.n_embd, cfg.n_layer
    torch_init, nanda_init = cfg.init == "torch", cfg.init == "nanda"
    proj_std = 0.02 / math.sqrt(2 * L)  # GPT-2's scaled init of residual projections
    # (name, shape, decays, std, constant, uniform bound)
    entries: list[tuple[str, tuple[int, ...], bool, float, float, float]] = [
        ("wte", (vocab_size, C), True, cfg.embedding_init_std, 0.0, 0.0),
        ("wpe", (cfg.block_size, C), True, cfg.embedding_init_std, 0.0, 0.0),
    ]

    def linear(prefix: str, n_in: int, n_out: int, std: float, bound: float | None = None,
               bias_bound: float | None = None, bias: bool = cfg.bias) -> None:
        """nanoGPT: N(0, std), zero bias. torch: nn.Linear's kaiming-uniform, U(±1/sqrt(fan_in)) for the
        weight and the bias, unless `bound` / `bias_bound` say otherwise. nanda: N(0, 1/sqrt(C)) for every
        matrix, the MLP's output projection too (Nanda et al.'s code divides by sqrt(d_model) throughout)."""
        fan = 1 / math.sqrt(n_in)
        w_bound = (fan if bound is None else bound) if torch_init else 0.0
        w_std = 0.0 if torch_init else 1 / math.sqrt(C) if nanda_init else std
        entries.append((f"{prefix}.weight", (n_in, n_out), True, w_std, 0.0, w_bound))
        if bias:
            b_bound = (fan if bias_bound is None else bias_bound) if torch_init else 0.0
            entries.append((f"{prefix}.bias", (n_out,), False, 0.0, 0.0, b_bound))

    def norm(prefix: str) -> None:
        if not cfg.layer_norm:
            return
        entries.append((f"{prefix}.weight", (C,), False, 0.0, 1.0, 0.0))
        if cfg.bias:
            entries.append((f"{prefix}.bias", (C,), False, 0.0, 0.0, 0.0))

    if not cfg.tie_embeddings:  # a bias-free head (C, V); torch: nn.Linear's U(±1/sqrt(C)); nanda: N(0, 1/sqrt(V))
        head_std = 0.0 if torch_init else 1 / math.sqrt(vocab_size) if nanda_init else 0.02
        entries.append(("lm_head", (C, vocab_size), True, head_std, 0.0, 1 / math.sqrt(C) if torch_init else 0.0))
    attn_bias = cfg.bias and cfg.attention_bias
    for i in range(L):
        norm(f"h.{i}.ln_1")
        # torch: nn.MultiheadAttention's Xavier-uniform over its (3C, C) in-projection, zero biases
        linear(f"h.{i}.attn.c_attn", C, 3 * C, 0.02, bound=math.sqrt(6 / (C + 3 * C)), bias_bound=0.0,
               bias=attn_bias)
        linear(f"h.{i}.attn.c_proj", C, C, proj_std, bias_bound=0.0, bias=attn_bias)
        norm(f"h.{i}.ln_2")
        linear(f"h.{i}.mlp.c_fc", C, 4 * C, 0.02)
        linear(f"h.{i}.mlp.c_proj", 4 * C, C, proj_std)
    norm("ln_f")

    specs, offset = [], 0
    # decayed weights first: each run's row is then two contiguous slices, [0, D) with weight decay and
    # [D, N) without, which a fused optimizer takes as two tensors
    entries.sort(key=lambda e: not e[2])
    for name, shape, decay, std, value, bound in entries:
        spec = ParamSpec(name, shape, offset, decay, std, value, bound)
        specs.append(spec)
        offset += spec.numel
    return specs


def init_row(specs: Sequence[ParamSpec], seed: int) -> torch.Tensor:
    """The initial flat weights of one run, drawn on the CPU from its own seed (so a run's init does not
    depend on the device or on which group it trains in)."""
    gen = torch.Generator().manual_seed(seed)
    parts = []
    for s in specs:
        if s.init_std > 0:
            parts.append(torch.randn(s.numel, generator=gen) * s.init_std)
        elif s.init_bound > 0:
            parts.append((torch.rand(s.numel, generator=gen) * 2 - 1) * s.init_bound)
        else:
            parts.append(torch.full((s.numel,), s.init_value))
    return torch.cat(parts)


class GPT:
    """E runs of one shape. `params[name]` has shape (E, *spec.shape)."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, n_members: int, device: torch.device | str = "cpu"):
        if cfg.block_size < 1:
            raise ValueError("block_size must be resolved (>= 1) before building the model")
        self.cfg, self.vocab_size, self.n_members = cfg, vocab_size, n_members
        self.specs = param_layout(cfg, vocab_size)
        self.numel = sum(s.numel for s in self.specs)
        self.flat = torch.zeros(n_members, self.numel, device=device)
        self.grad = torch.zeros_like(self.flat)
        self.params: dict[str, torch.Tensor] = {}
        for s in self.specs:
            p = self._view(self.flat, s).detach().requires_grad_(True)
            p.grad = self._view(self.grad, s)
            self.params[s.name] = p
        self.leaves = tuple(self.params.values())  # in flat order: their gradients concatenated are a row of `grad`
        self.n_decay = sum(s.numel for s in self.specs if s.decay)  # D: the decayed prefix of each row
        decay = torch.zeros(self.numel, device=device)
        decay[: self.n_decay] = 1.0
        self.decay_mask = decay[None, :]  # (1, N)
        self.training = True

    @staticmethod
    def _view(buf: torch.Tensor, s: ParamSpec) -> torch.Tensor:
        return buf[:, s.offset : s.offset + s.numel].view(buf.shape[0], *s.shape)

    @property
    def device(self) -> torch.device:
        return self.flat.device

    @torch.no_grad()
    def init_from_seeds(self, seeds: Sequence[int]) -> None:
        if len(seeds) != self.n_members:
            raise ValueError(f"need {self.n_members} seeds, got {len(seeds)}")
        for e, seed in enumerate(seeds):
            self.flat[e].copy_(init_row(self.specs, seed))

    def member_state(self, e: int) -> dict[str, torch.Tensor]:
        """Weights of one run as independent CPU tensors, named as in nanoGPT (for safetensors)."""
        return {s.name: self._view(self.flat, s)[e].detach().cpu().clone() for s in self.specs}

    @torch.no_grad()
    def load_member_state(self, e: int, state: dict[str, torch.Tensor]) -> None:
        for s in self.specs:
            t = state.get(s.name)
            if t is None or tuple(t.shape) != s.shape:
                got = None if t is None else tuple(t.shape)
                raise ValueError(f"weights for {s.name}: expected shape {s.shape}, found {got}")
            self._view(self.flat, s)[e].copy_(t)

    def zero_grad(self) -> None:
        self.grad.zero_()  # never set to None: a plain backward() must keep accumulating into the flat buffer

    def __call__(self, idx: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        dropout = self.cfg.dropout if self.training else 0.0
        return forward(self.params, self.cfg, idx, dropout=dropout, positions=positions)


def _layer_norm(x: torch.Tensor, p: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    weight, bias = p.get(f"{prefix}.weight"), p.get(f"{prefix}.bias")
    if weight is None:  # layer_norm off: the model has no LayerNorm (Nanda et al.'s)
        return x
    # per-run gains: normalise without affine, then scale/shift with (E, 1, 1, C) broadcasts. One run too: the
    # fused affine kernel rounds otherwise, and a run must do the same arithmetic alone as in any group (a sweep
    # resumed after a member failed, or with another --max_group, resumes it in a group of another size)
    y = F.layer_norm(x, x.shape[-1:], eps=1e-5) * weight[:, None, None, :]
    return y if bias is None else y + bias[:, None, None, :]


def _linear(x: torch.Tensor, p: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    E, B, T, C = x.shape
    w = p[f"{prefix}.weight"]  # (E, C_in, C_out)
    b = p.get(f"{prefix}.bias")
    x2 = x.reshape(E, B * T, C)
    if b is None:
        y = torch.bmm(x2, w)
    elif x.is_cuda and torch.compiler.is_compiling():
        y = _product_then_bias(x2, w, b)
    else:
        y = torch.baddbmm(b[:, None, :], x2, w)
    return y.view(E, B, T, w.shape[-1])


def _product_then_bias(x2: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(E, rows, C_in) x (E, C_in, C_out) + the bias (E, C_out), for torch.compile on a GPU: there baddbmm
    first copies the broadcast bias into the whole output (an ATen strided copy a linear layer, which inductor
    cannot fuse: 7 % of a compiled step at 3 runs x batch 512 on an H200), while an addition after a plain
    product is fused into the kernel that reads the product next. The sum stays in the bias's float32 (under
    bf16 autocast a product of bf16 is rounded once, not its sum with the bias again): measured faster on an
    H200 than rounding it to bf16 (round 18/19, docs/benchmarks.md), and what reads it (the residual, GELU,
    the attention's float32 sums) takes float32 anyway."""
    return torch.bmm(x2, w) + b[:, None, :]


SHORT_CONTEXT = 64  # up to this many tokens, attention as two small matmuls beats the fused kernels


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor, dropout: float) -> torch.Tensor:
    """Causal attention (EB, H, Tq, D) x (EB, H, T, D) -> (EB, H, Tq, D). For the short sequences of
    equations, the fused kernels' 64x64 tiles are mostly padding (measured on an H100: ~40 % of a group
    step at T = 8); plain matmuls and a masked softmax do the same sums with far less waste."""
    if k.shape[2] > SHORT_CONTEXT:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout)
    if q.is_cuda and torch.compiler.is_compiling():
        return _attention_as_reductions(q, k, v, allowed, dropout)
    # the scores in float32 before scaling, masking and softmax (under bf16 autocast the product is bf16;
    # for float32 scores .float() is the same tensor)
    return _attention_weights((q @ k.transpose(-2, -1)).float(), q.shape[-1], allowed, dropout) @ v


def _attention_as_reductions(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor,
                             dropout: float) -> torch.Tensor:
    """The same attention as products summed over broadcast axes, for torch.compile on a GPU: inductor makes
    each sum one fused reduction that reads q, k and v where they lie. As matmuls, a group's (E*B*H) tiny
    products become cuBLAS calls in chunks of 65,535 on non-tensor-core kernels (measured on an H200, E = 512,
    batch 512: about 30 % of a compiled step). Eagerly this would build the (EB, H, Tq, T, D) product in
    memory, so only compiled code takes it. Scores and the weighted sum are accumulated in float32 (under bf16
    autocast too)."""
    scores = (q.float()[..., :, None, :] * k.float()[..., None, :, :]).sum(-1)
    att = _attention_weights(scores, q.shape[-1], allowed, dropout)
    return (att[..., :, :, None] * v.float()[..., None, :, :]).sum(-2)  # (EB, H, Tq, D)


def _attention_weights(scores: torch.Tensor, head_size: int, allowed: torch.Tensor, dropout: float) -> torch.Tensor:
    """Float32 scores q.k (EB, H, Tq, T) -> the attention weights: scaled by 1/sqrt(head size), a softmax over
    the allowed keys, dropout."""
    att = (scores * (1.0 / math.sqrt(head_size))).masked_fill(~allowed, float("-inf")).softmax(dim=-1)
    return _dropout(att, dropout)


def _dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Dropout in training (p > 0); nothing at all otherwise. A Python branch, not F.dropout(training=p > 0):
    under torch.compile with dynamic shapes p is symbolic, and F.dropout takes only a real bool."""
    return F.dropout(x, p, training=True) if p > 0 else x


class _EmbeddingSummedByProduct(torch.autograd.Function):
    """Run e's ids (E, B, T) looked up in its own table wte[e] (E, V, C), whose table gradient is a one-hot
    matrix product. An embedding's own backward adds each token's gradient into its row, which inductor
    compiles to atomic additions: their order, and so the rounding, changed from one process to the next (a
    `--compile` run did not repeat itself, CPU and GPU alike). A product sums in a fixed order."""

    @staticmethod
    def forward(ctx, idx: torch.Tensor, wte: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(idx)
        ctx.vocab = wte.shape[1]
        return _lookup(idx, wte)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        (idx,) = ctx.saved_tensors
        E, B, T, C = grad.shape
        # one product over all B*T rows leaves a GPU a dozen output tiles for a small group (an 85-us float32
        # GEMM a step at 3 runs x batch 512 on an H200, 11 % of the step): S products over parts of the batch,
        # summed in a fixed order, give it S times as many
        S = _table_parts(B, T)
        rows = B // S * T
        onehot = (idx.reshape(E * S, rows, 1) == torch.arange(ctx.vocab, device=idx.device)).to(grad.dtype)
        parts = torch.bmm(onehot.transpose(1, 2), grad.reshape(E * S, rows, C))  # (E*S, V, C)
        return None, parts.reshape(E, S, ctx.vocab, C).sum(1)


def _table_parts(B: int, T: int, rows: int = 128) -> int:
    """Into how many parts the table gradient's product splits a batch of B sequences of T tokens: the most
    that divide B and leave each part at least `rows` rows. A plain loop: torch.compile traces it (a
    max() over a generator with a default breaks its graph)."""
    parts = 1
    for s in range(1, B + 1):
        if B % s == 0 and B // s * T >= rows:
            parts = s
    return parts


def _lookup(idx: torch.Tensor, wte: torch.Tensor) -> torch.Tensor:
    """Ids (E, B, T) -> rows of each run's own table (E, B, T, C): one embedding into the (E*V, C) stack."""
    E, V, C = wte.shape
    offsets = (torch.arange(E, device=idx.device) * V)[:, None, None]
    return F.embedding(idx + offsets, wte.reshape(E * V, C))


def _embed(idx: torch.Tensor, wte: torch.Tensor) -> torch.Tensor:
    """The token embedding; compiled code takes the fixed-order gradient (eager code is unchanged: its
    embedding backward does not depend on timing)."""
    if torch.compiler.is_compiling():
        return _EmbeddingSummedByProduct.apply(idx, wte)
    return _lookup(idx, wte)


def _gather_positions(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """x (E, B, T, C), positions (E, B, K) -> x at those positions (E, B, K, C)."""
    return torch.gather(x, 2, positions[..., None].expand(-1, -1, -1, x.shape[-1]))


def forward(
    p: dict[str, torch.Tensor],
    cfg: ModelConfig,
    idx: torch.Tensor,
    dropout: float = 0.0,
    positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """Token ids (E, B, T) -> logits (E, B, T, V), or (E, B, K, V) at `positions` (E, B, K) only.

    With positions, the last block computes queries, the attention projection, the MLP, the final norm and
    the head only where logits are wanted (keys and values still cover every position): the same logits
    there, and for a loss on the answer only (3 of 8 positions in char-level division) far less work.
    """
    E, B, T = idx.shape
    if T > cfg.block_size:
        raise ValueError(f"sequence of {T} tokens is longer than block_size {cfg.block_size}")
    wte = p["wte"]  # (E, V, C)
    V, C, H = wte.shape[1], cfg.n_embd, cfg.n_head
    x = _embed(idx, wte)  # (E, B, T, C)
    x = x + p["wpe"][:, None, :T, :]
    x = _dropout(x, dropout)
    act = F.relu if cfg.activation == "relu" else F.gelu
    for i in range(cfg.n_layer):
        h = f"h.{i}"
        select = positions is not None and i == cfg.n_layer - 1
        normed = _layer_norm(x, p, f"{h}.ln_1")
        if cfg.norm_residual:  # the Grokfast code's block: the attention adds to the normalised stream
            x = normed
        qkv = _linear(normed, p, f"{h}.attn.c_attn")  # (E, B, T, 3C)
        q, k, v = qkv.split(C, dim=-1)
        if select:
            q, x = _gather_positions(q, positions), _gather_positions(x, positions)  # (E, B, K, C)
        Tq = q.shape[2]
        q, k, v = (t.reshape(E * B, t.shape[2], H, C // H).transpose(1, 2) for t in (q, k, v))  # (EB, H, T, D)
        if select:
            query_pos = positions.reshape(E * B, 1, Tq, 1)
        else:
            query_pos = torch.arange(T, device=idx.device).view(1, 1, T, 1)
        allowed = torch.arange(T, device=idx.device) <= query_pos  # (EB or 1, 1, Tq, T): causal
        y = _attention(q, k, v, allowed, dropout)
        y = y.transpose(1, 2).reshape(E, B, Tq, C)
        x = x + _dropout(_linear(y, p, f"{h}.attn.c_proj"), dropout)
        m = act(_linear(_layer_norm(x, p, f"{h}.ln_2"), p, f"{h}.mlp.c_fc"))
        x = x + _dropout(_linear(m, p, f"{h}.mlp.c_proj"), dropout)
    x = _layer_norm(x, p, "ln_f")
    Tx = x.shape[2]
    head = p["lm_head"] if "lm_head" in p else wte.transpose(1, 2)  # (E, C, V): own head, or the tied embedding
    logits = torch.bmm(x.reshape(E, B * Tx, C), head)
    return logits.view(E, B, Tx, V)
