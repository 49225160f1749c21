"""One training step for a group of E runs at once (E = 1 is a single run), and evaluation of all of them.

Everything a run owns is a row: its weights, gradients and Adam moments are rows of (E, N) buffers, and its
seed, learning rate, weight decay, betas, clipping, warm-up and batch size are (E, 1) tensors. One step is
forward, backward, per-run clipping and per-run AdamW over whole buffers, so a run's update never depends
on the other members: a run trained in a group follows the same curve as the same run trained alone.

Batches are drawn with replacement from a counter-based hash of (run seed, step, slot), computed on the
device: no generator state to save, the data position after a restart is a function of the step, and no
host round-trip is needed to make a batch. A run with batch size 0 trains full batch (Nanda et al. 2023):
every step takes its whole train split, in order; rows past its own split (padding) are masked out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import torch
import torch.nn.functional as F

from groklab.engine.compile_cache import prepare_compile
from groklab.config import OptimConfig
from groklab.data.examples import Stacked
from groklab.engine.grokfast import make_filter
from groklab.engine.orthograd import project_out_weights
from groklab.model.gpt import GPT, forward
from groklab.engine.precision import StepPrecision, autocast

_MASK32 = 0xFFFFFFFF


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (lowbias32-style) in int64 arithmetic that never overflows: inputs stay
    below 2**32 and the multipliers below 2**31."""
    x = ((x ^ (x >> 16)) * 0x7FEB352D) & _MASK32
    x = ((x ^ (x >> 15)) * 0x46B5B2A5) & _MASK32  # odd constant below 2**31
    return x ^ (x >> 16)


def batch_indices(seeds: torch.Tensor, step: torch.Tensor, batch: int, counts: torch.Tensor) -> torch.Tensor:
    """Row indices (E, batch) into each run's train split, from (seed, step, slot) alone."""
    slots = torch.arange(batch, device=seeds.device)
    h = _mix32(seeds[:, None] & _MASK32)
    h = _mix32(h ^ (step & _MASK32))
    h = _mix32(h ^ slots[None, :])
    return h % counts[:, None]


def member_losses(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (E, B, T, V), targets (E, B, T) -> (summed token loss (E,), loss tokens (E,))."""
    E, B, T, V = logits.shape
    tok = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-1, reduction="none")
    return tok.view(E, B * T).sum(1), (targets >= 0).view(E, B * T).sum(1)


def _loss(params: dict[str, torch.Tensor], cfg, x: torch.Tensor, pos: torch.Tensor | None, y: torch.Tensor,
          dropout: float, bf16: bool = False) -> torch.Tensor:
    """Each run's mean answer-token loss (E,) on its batch; `bf16`: the forward's matrix products autocast,
    the loss taken on float32 logits (for float32 logits .float() is the same tensor: fp32 is unchanged)."""
    with autocast(bf16, x.device):
        logits = forward(params, cfg, x, dropout=dropout, positions=pos)
    total, count = member_losses(logits.float(), y)
    return total / count.clamp(min=1)


def draw_batch(seeds: torch.Tensor, step: torch.Tensor, batch: int, train: Stacked, slot_valid: torch.Tensor,
               full: torch.Tensor | None = None, rows: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Inputs (E, B, T), loss positions (E, B, K) or None, and answers (E, B, K) of the batch at `step`;
    slots past a run's own batch size answer -1 (no loss). `full` (E,): the runs that take their whole split
    in order (batch size 0), slot i being row `rows[0, i]`."""
    idx = batch_indices(seeds, step, batch, train.counts)  # (E, B)
    if full is not None:
        idx = torch.where(full[:, None], rows, idx)
    idx = idx[..., None]  # (E, B, 1)
    x = torch.gather(train.inputs, 1, idx.expand(-1, -1, train.inputs.shape[-1]))
    rows = idx.expand(-1, -1, train.answers.shape[-1])
    pos = None if train.positions is None else torch.gather(train.positions, 1, rows)
    y = torch.gather(train.answers, 1, rows)
    return x, pos, torch.where(slot_valid[..., None], y, -1)


def _clip_coef(grad: torch.Tensor, max_norm: torch.Tensor) -> torch.Tensor:
    """Per-run clipping factor (E, 1), as torch.nn.utils.clip_grad_norm_ over that run's parameters (0 = off)."""
    norm = torch.linalg.vector_norm(grad, dim=1, keepdim=True)
    return torch.where(max_norm > 0, (max_norm / (norm + 1e-6)).clamp(max=1.0), 1.0)


def scheduled_lr(lr: torch.Tensor, warmup: torch.Tensor, t: torch.Tensor,
                 decay_steps: torch.Tensor | None = None, min_lr: torch.Tensor | None = None) -> torch.Tensor:
    """The learning rate of update number t (counting from 1): a linear warm-up over `warmup` updates, then
    constant or, where decay_steps > 0, nanoGPT's cosine from lr down to min_lr at update decay_steps and
    min_lr after. Any broadcastable tensors: the host (float64 scalars) and the step ((E, 1) float32) share
    these ops, so both give what each would give alone. decay_steps None: no run decays (fewer kernels)."""
    warm = torch.clamp(t / warmup.clamp(min=1), max=1.0)
    if decay_steps is None:
        return lr * warm
    ratio = torch.clamp((t - warmup) / (decay_steps - warmup).clamp(min=1), min=0.0, max=1.0)
    cosine = min_lr + 0.5 * (1.0 + torch.cos(math.pi * ratio)) * (lr - min_lr)
    return torch.where(decay_steps > 0, cosine, lr) * warm


def _adamw_rows(flat: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
                step: torch.Tensor, h: "Hyper", decay_mask: torch.Tensor, clip: bool, l2: bool = False,
                lr_decay: bool = False) -> None:
    """AdamW on (E, N) buffers with (E, 1) hyperparameters, `step` already counting this update; the same
    order of operations as torch.optim.AdamW's single-tensor path (and torch.optim.Adam's, for the runs
    whose decay is L2: `l2` says some are). `lr_decay`: some run decays its learning rate. Computed out of
    place, written back at the end: one shape of code that eager mode and torch.compile both take."""
    g = grad * _clip_coef(grad, h.grad_clip) if clip else grad
    t = step.to(flat.dtype)
    lr = h.lr_at(t, lr_decay)
    decay = h.weight_decay * decay_mask
    if l2:
        g = g + (h.l2 * decay) * flat
        decay = decay * (1 - h.l2)
    new_flat = flat * (1 - lr * decay)
    m = torch.lerp(exp_avg, g, 1 - h.beta1)
    v = exp_avg_sq * h.beta2 + (1 - h.beta2) * g * g
    bias_correction1 = 1 - h.beta1**t
    bias_correction2_sqrt = (1 - h.beta2**t).sqrt()
    denom = v.sqrt() / bias_correction2_sqrt + h.eps
    flat.copy_(new_flat - (lr / bias_correction1) * m / denom)
    exp_avg.copy_(m)
    exp_avg_sq.copy_(v)


@dataclass
class Hyper:
    """Per-run optimisation settings as (E, 1) float tensors (seeds and batch sizes as (E,) int64)."""

    lr: torch.Tensor
    weight_decay: torch.Tensor
    beta1: torch.Tensor
    beta2: torch.Tensor
    eps: torch.Tensor
    grad_clip: torch.Tensor
    warmup: torch.Tensor
    decay_steps: torch.Tensor  # (E, 1): the cosine decay's last step, 0 = no decay
    min_lr: torch.Tensor
    seeds: torch.Tensor
    batch_sizes: torch.Tensor
    grokfast_alpha: torch.Tensor
    grokfast_lamb: torch.Tensor
    orthograd: torch.Tensor  # (E, 1): 1 where ⊥Grad is on
    l2: torch.Tensor  # (E, 1): 1 where weight decay is an L2 term in the gradient (Adam), 0 decoupled (AdamW)
    decay_all: torch.Tensor  # (E, 1): 1 where weight decay acts on every parameter, 0 on 2-D weights only
    grokfast: str = "none"  # one filter kind and window a group: their state buffers have one shape
    grokfast_window: int = 100

    @classmethod
    def build(
        cls, optims: Sequence[OptimConfig], seeds: Sequence[int], batch_sizes: Sequence[int], device: torch.device
    ) -> "Hyper":
        def col(values: Sequence[float]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float32, device=device)[:, None]

        return cls(
            lr=col([o.learning_rate for o in optims]),
            weight_decay=col([o.weight_decay for o in optims]),
            beta1=col([o.beta1 for o in optims]),
            beta2=col([o.beta2 for o in optims]),
            eps=col([o.eps for o in optims]),
            grad_clip=col([o.grad_clip for o in optims]),
            warmup=col([o.warmup_steps for o in optims]),
            decay_steps=col([o.lr_decay_steps for o in optims]),
            min_lr=col([o.final_lr for o in optims]),
            seeds=torch.tensor(seeds, dtype=torch.long, device=device),
            batch_sizes=torch.tensor(batch_sizes, dtype=torch.long, device=device),
            grokfast_alpha=col([o.grokfast_alpha for o in optims]),
            grokfast_lamb=col([o.grokfast_lamb for o in optims]),
            orthograd=col([float(o.orthograd) for o in optims]),
            l2=col([float(o.weight_decay_mode == "l2") for o in optims]),
            decay_all=col([float(o.decay_on == "all") for o in optims]),
            grokfast=_one({o.grokfast for o in optims}, "grokfast"),
            grokfast_window=_one({o.grokfast_window for o in optims}, "grokfast_window"),
        )


    def lr_at(self, t: torch.Tensor, lr_decay: bool) -> torch.Tensor:
        """Each run's rate (E, 1) for update number t, in t's dtype (float32 in the step, float64 on the host
        for the fused optimizer); `lr_decay`: some run decays (otherwise fewer ops)."""
        def cast(c: torch.Tensor) -> torch.Tensor:
            return c.to(t.dtype)  # no copy in the step, where the dtypes already agree

        decay = (cast(self.decay_steps), cast(self.min_lr)) if lr_decay else ()
        return scheduled_lr(cast(self.lr), cast(self.warmup), t, *decay)


def _one(values: set, name: str):
    if len(values) != 1:
        raise ValueError(f"runs of one group must share {name}, got {sorted(values)}")
    return values.pop()


OptimizerPath = Literal["auto", "fused", "tensor"]


class Engine:
    """Trains the E runs of `model` on their stacked train splits.

    Two AdamW paths compute the same update (a test holds them together):
    - "fused": torch.optim.AdamW(fused=True) with one parameter group per run and region (decayed prefix,
      rest), each with the run's own lr/betas/decay. One kernel per group: the fastest for a few runs, and
      on the CPU the same kernel as a plain nanoGPT loop.
    - "tensor": the update written as ~15 ops over the whole (E, N) buffers with (E, 1) hyperparameters:
      a constant number of kernels whatever E, for large groups on a GPU.
    """

    def __init__(
        self,
        model: GPT,
        hyper: Hyper,
        train: Stacked,
        optimizer: OptimizerPath = "auto",
        compile: bool = False,
        precision: str = "fp32",
    ):
        dev = model.device
        self.precision = StepPrecision.plan(precision, dev)  # what the step computes in; a capture may change it
        self.model, self.hyper = model, hyper
        self.train = train.to(dev)
        self.step_count = torch.zeros((), dtype=torch.long, device=dev)  # optimizer steps taken so far
        self.steps_taken = 0  # the same count on the host, for the warm-up schedule of the fused path
        # batch size 0: full batch, every row of the run's train split each step (slot i is row i)
        self.full_batch = hyper.batch_sizes == 0  # (E,)
        n_rows = self.train.inputs.shape[1]
        self.any_full = bool(self.full_batch.any())
        self.max_batch = max(int(hyper.batch_sizes.max()), n_rows if self.any_full else 0)
        slots = torch.arange(self.max_batch, device=dev)[None, :]
        self._rows = slots.clamp(max=n_rows - 1)  # (1, B): full-batch slots past the padded split read its last row
        # slots past a run's own batch size (or, full batch, its own split) are masked out of its loss: runs of
        # several batch sizes, or train splits of several sizes, share a group
        self.slot_valid = torch.where(self.full_batch[:, None], slots < self.train.counts[:, None],
                                      slots < hyper.batch_sizes[:, None])
        self.clip = bool((hyper.grad_clip > 0).any())
        self.orthograd = bool((hyper.orthograd > 0).any())
        self.l2 = bool((hyper.l2 > 0).any())
        self.lr_decay = bool((hyper.decay_steps > 0).any())
        # which coordinates weight decay touches: the model's 2-D weights (1, N), or, where some run decays
        # every parameter (decay_on "all"), a per-run (E, N) mask, built once here rather than every step
        all_runs = hyper.decay_all > 0
        self.decay_mask = torch.where(all_runs, 1.0, model.decay_mask) if bool(all_runs.any()) else model.decay_mask
        self._graph: torch.cuda.CUDAGraph | None = None
        self._graph_loss = torch.zeros(0)
        if optimizer == "auto":  # a GPU step is captured as a CUDA graph, which takes the tensor path
            optimizer = "fused" if dev.type == "cpu" else "tensor"
        self.optimizer_path = optimizer
        # opt-in: torch.compile fuses the elementwise chains of the loss and of the tensor AdamW (Triton on a
        # GPU); the captured graph then replays the fused kernels
        # and the batch: its integer hash is ~30 one-element-a-slot kernels eagerly, ~10 % of a one-run step
        if compile:
            prepare_compile()
        self._loss_fn = torch.compile(_loss, dynamic=False) if compile else _loss
        self._update_fn = torch.compile(_adamw_rows, dynamic=False) if compile else _adamw_rows
        self._batch_fn = torch.compile(draw_batch, dynamic=False) if compile else draw_batch
        self.compiled = compile
        self.grad_filter = make_filter(hyper.grokfast, hyper.grokfast_window, hyper.grokfast_alpha,
                                       hyper.grokfast_lamb, tuple(model.grad.shape), dev)
        if optimizer == "fused":
            self._build_fused()
        else:
            self.exp_avg = torch.zeros_like(model.flat)
            self.exp_avg_sq = torch.zeros_like(model.flat)

    def _build_fused(self) -> None:
        m, h, D = self.model, self.hyper, self.model.n_decay
        groups: dict[bool, list[dict]] = {False: [], True: []}  # decoupled (AdamW) runs, L2 (Adam) runs
        regions = []
        for e in range(m.n_members):
            for lo, hi, decays in ((0, D, True), (D, m.numel, False)):
                if hi <= lo:
                    continue
                p = m.flat[e, lo:hi].detach()  # a contiguous leaf view of run e's region
                p.grad = m.grad[e, lo:hi]
                l2 = bool(h.l2[e] > 0)
                decays = decays or bool(h.decay_all[e] > 0)
                groups[l2].append({"params": [p], "lr": float(h.lr[e]), "betas": (float(h.beta1[e]), float(h.beta2[e])),
                                   "eps": float(h.eps[e]), "weight_decay": float(h.weight_decay[e]) if decays else 0.0,
                                   "run": e})
                regions.append((e, lo, hi, p, l2))
        opts = {l2: (torch.optim.Adam if l2 else torch.optim.AdamW)(g, fused=True) for l2, g in groups.items() if g}
        self._opts = list(opts.values())
        self._slices = [(e, lo, hi, p, opts[l2]) for e, lo, hi, p, l2 in regions]

    def batch(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Inputs (E, B, T), loss positions (E, B, K) or None, and answers (E, B, K) of the next step."""
        full = self.full_batch if self.any_full else None
        return self._batch_fn(self.hyper.seeds, self.step_count, self.max_batch, self.train, self.slot_valid, full,
                              self._rows)

    def step(self) -> torch.Tensor:
        """One optimizer step for every run; returns each run's batch loss (E,), still on the device (with a
        CUDA graph, a buffer that the next step overwrites: read it before stepping again)."""
        if self._graph is not None:
            self._graph.replay()
            self.steps_taken += 1
            return self._graph_loss
        return self._eager_step()

    def capture_cuda_graph(self, warmup: int = 3) -> str:
        """Capture one whole step (batch, forward, backward, AdamW) as a CUDA graph, so a step is one launch
        and no host round-trip. Returns the path that will run: "cuda-graph", or "eager: <why>".

        The warm-up steps that capture needs are rolled back, so the trajectory is the eager one."""
        if self.model.device.type != "cuda":
            return "eager: not a CUDA device"
        if self.optimizer_path != "tensor":
            return "eager: the fused per-run optimizer path is not captured (use optimizer='tensor')"
        state = [self.model.flat, self.exp_avg, self.exp_avg_sq, self.step_count, *self.grad_filter.buffers()]
        saved = [t.clone() for t in state]
        taken = self.steps_taken
        dev = self.model.device
        try:
            # This engine's own stream for the warm-up and the capture. torch.cuda.graph's default is one capture
            # stream for every graph of the process, and cuBLAS keys its workspace by stream: graphs captured on
            # one stream write the same workspace, which corrupts their GEMMs when groups replay at once (seen
            # on an H200 as runs 5 % apart in weights), and freeing one graph frees the workspace of the others
            # (pytorch/pytorch#193402). torch hands streams out round-robin from a pool of 32 a device, so the
            # groups of one wave (at most 8, each also training on a stream of its own) never share one.
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            # TF32 on for this warm-up and capture alone (precision.py says why no group can race on it)
            with self.precision.capturing(dev):
                with torch.cuda.stream(stream):  # warm-up: allocator pools, cuBLAS handle and workspace
                    for _ in range(warmup):
                        self._eager_step()
                torch.cuda.current_stream().wait_stream(stream)
                with torch.no_grad():
                    for t, s in zip(state, saved):
                        t.copy_(s)
                graph = torch.cuda.CUDAGraph()
                # thread_local: other threads may train their own groups (and sync their streams) meanwhile
                with torch.cuda.graph(graph, stream=stream, capture_error_mode="thread_local"):
                    loss = self._eager_step()
        except RuntimeError as exc:  # e.g. an op that cannot be captured on this build
            with torch.no_grad():
                for t, s in zip(state, saved):
                    t.copy_(s)
            self.steps_taken = taken
            return f"eager: CUDA graph capture failed ({str(exc).splitlines()[0][:120]})"
        self.steps_taken = taken  # capture ran the Python side once but no kernel
        self._graph, self._graph_loss = graph, loss
        self.precision = self.precision.captured(dev)
        return "cuda-graph"

    def _eager_step(self) -> torch.Tensor:
        x, pos, y = self.batch()
        m = self.model
        dropout = m.cfg.dropout if m.training else 0.0
        loss = self._loss_fn(m.params, m.cfg, x, pos, y, dropout, self.precision.bf16)
        # runs share no weights, so each row of the gradient is that run's own. The gradients come back as
        # fresh tensors and one cat writes them into the flat buffer: accumulating into zeroed .grad views
        # instead costs a zero and an add per parameter tensor, ~10 % of a small group's kernels on a GPU
        grads = torch.autograd.grad(loss.sum(), m.leaves, materialize_grads=True)
        torch.cat([g.reshape(m.n_members, -1) for g in grads], dim=1, out=m.grad)
        self.grad_filter.apply(self.model.grad, self.step_count)  # Grokfast, before clipping and AdamW
        if self.orthograd:
            project_out_weights(self.model.grad, self.model.flat, self.model.specs, self.hyper.orthograd)
        self._adamw()
        return loss.detach()

    @torch.no_grad()
    def _adamw(self) -> None:
        h, flat, grad = self.hyper, self.model.flat, self.model.grad
        self.step_count += 1
        self.steps_taken += 1
        if self.optimizer_path == "tensor":
            self._update_fn(flat, grad, self.exp_avg, self.exp_avg_sq, self.step_count, h, self.decay_mask,
                            self.clip, self.l2, self.lr_decay)
            return
        if self.clip:
            grad.mul_(_clip_coef(grad, h.grad_clip))
        if self.optimizer_path == "fused":
            # the schedule on the host in float64, as Python floats would compute it
            rates = h.lr_at(torch.tensor(float(self.steps_taken), dtype=torch.float64), self.lr_decay).view(-1).tolist()
            for opt in self._opts:
                for g in opt.param_groups:
                    g["lr"] = rates[g["run"]]
                opt.step()

    def _moment(self, e: int, name: str) -> torch.Tensor:
        if self.optimizer_path == "tensor":
            return getattr(self, name)[e]
        parts = []
        for run, lo, hi, p, opt in self._slices:
            if run == e:
                state = opt.state[p]
                parts.append(state[name] if state else torch.zeros(hi - lo, device=p.device))
        return torch.cat(parts)

    def member_state(self, e: int) -> dict[str, torch.Tensor]:
        """Optimizer (and gradient filter) state of one run (CPU tensors) for its checkpoint; the same for
        either path."""
        state = {name: self._moment(e, name).detach().cpu().clone() for name in ("exp_avg", "exp_avg_sq")}
        return state | self.grad_filter.member_state(e)

    @torch.no_grad()
    def load_member_state(self, e: int, state: dict[str, torch.Tensor], step: int) -> None:
        """Restore run e's Adam moments (and gradient filter), taken after `step` optimizer steps."""
        self.grad_filter.load_member_state(e, state)
        for name in ("exp_avg", "exp_avg_sq"):
            t = state[name]
            if t.shape != (self.model.numel,):
                raise ValueError(f"{name}: expected {self.model.numel} values, found {tuple(t.shape)}")
            if self.optimizer_path == "tensor":
                getattr(self, name)[e].copy_(t)
                continue
            for run, lo, hi, p, opt in self._slices:
                if run == e:
                    st = opt.state[p]
                    if not st:
                        st["step"] = torch.tensor(float(step), dtype=torch.float32, device=p.device)
                        st["exp_avg"] = torch.zeros_like(p)
                        st["exp_avg_sq"] = torch.zeros_like(p)
                    st["step"].fill_(float(step))
                    st[name].copy_(t[lo:hi])
        self.step_count.fill_(step)
        self.steps_taken = step


@torch.no_grad()
def evaluate(model: GPT, split: Stacked, max_tokens: int = 1 << 17) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean answer-token loss, exact-match accuracy (every answer token right) and per-token accuracy (the
    share of scored answer tokens right) of each run on its whole split -> (loss, accuracy, token accuracy),
    each (E,), on the device.

    Teacher-forced argmax over the answer equals greedy generation of it exactly when every answer token is
    right, so exact match is that of greedy decoding, in one forward pass; per-token accuracy counts each
    token on its own (what character-level results are often quoted as).
    """
    was_training = model.training
    model.training = False
    dev = model.device
    split = split.to(dev)
    E, n_max, T = split.inputs.shape
    chunk = max(1, max_tokens // max(E * T, 1))
    loss_sum = torch.zeros(E, device=dev)
    tokens = torch.zeros(E, device=dev)
    correct = torch.zeros(E, device=dev)
    right_tokens = torch.zeros(E, device=dev)
    for start in range(0, n_max, chunk):
        x, y = split.inputs[:, start : start + chunk], split.answers[:, start : start + chunk]
        pos = None if split.positions is None else split.positions[:, start : start + chunk]
        rows = torch.arange(start, start + x.shape[1], device=dev)
        real = rows[None, :] < split.counts[:, None]  # (E, b): padding rows of shorter splits do not count
        y = torch.where(real[..., None], y, -1)
        logits = model(x, pos)
        s, c = member_losses(logits, y)
        loss_sum += s
        tokens += c
        hit = logits.argmax(-1) == y  # (E, b, K); False where y is -1
        correct += (((hit | (y < 0)).all(-1)) & real).sum(1)
        right_tokens += hit.sum((1, 2))
    model.training = was_training
    return loss_sum / tokens.clamp(min=1), correct / split.counts.clamp(min=1), right_tokens / tokens.clamp(min=1)
