"""One training step for a group of E runs at once (E = 1 is a single run).

Everything a run owns is a row: its weights, gradients and Adam moments are rows of (E, N) buffers, and its
seed, learning rate, weight decay, betas, clipping, warm-up and batch size are (E, 1) tensors. One step is
batch (batch.py), forward, backward, gradient filters, per-run clipping and per-run AdamW (optimizers.py) over
whole buffers, so a run's update never depends on the other members: a run trained in a group follows the same
curve as the same run trained alone. On a GPU the whole step is captured as one CUDA graph.
"""

from __future__ import annotations

from typing import Literal

import torch

from groklab.config import COMPILED
from groklab.data.examples import Stacked
from groklab.engine.batch import draw_batch
from groklab.engine.compile_cache import prepare_compile
from groklab.engine.evaluate import member_losses
from groklab.engine.grokfast import make_filter
from groklab.engine.hyper import Hyper
from groklab.engine.optimizers import MOMENTS, make_optimizer
from groklab.engine.orthograd import project_out_weights
from groklab.engine.precision import StepPrecision, autocast
from groklab.model.gpt import GPT, forward


def _loss(params: dict[str, torch.Tensor], cfg, x: torch.Tensor, pos: torch.Tensor | None, y: torch.Tensor,
          dropout: float, bf16: bool = False) -> torch.Tensor:
    """Each run's mean answer-token loss (E,) on its batch; `bf16`: the forward's matrix products autocast,
    the loss taken on float32 logits (for float32 logits .float() is the same tensor: fp32 is unchanged)."""
    with autocast(bf16, x.device):
        logits = forward(params, cfg, x, dropout=dropout, positions=pos)
    total, count = member_losses(logits.float(), y)
    return total / count.clamp(min=1)


OptimizerPath = Literal["auto", "fused", "tensor"]


class Engine:
    """Trains the E runs of `model` on their stacked train splits.

    The optimizer is one of optimizers.py's two AdamW paths ("fused" or "tensor"; "auto" picks).
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
        self.orthograd = bool((hyper.orthograd > 0).any())
        # which coordinates weight decay touches: the model's 2-D weights (1, N), or, where some run decays
        # every parameter (decay_on "all"), a per-run (E, N) mask, built once here rather than every step
        all_runs = hyper.decay_all > 0
        self.decay_mask = torch.where(all_runs, 1.0, model.decay_mask) if bool(all_runs.any()) else model.decay_mask
        self._graph: torch.cuda.CUDAGraph | None = None
        self._graph_loss = torch.zeros(0)
        # opt-in: torch.compile fuses the elementwise chains of the loss and of the tensor AdamW (Triton on a
        # GPU); the captured graph then replays the fused kernels
        # and the batch: its integer hash is ~30 one-element-a-slot kernels eagerly, ~10 % of a one-run step
        if compile:
            prepare_compile()
        self._loss_fn = torch.compile(_loss, dynamic=False) if compile else _loss
        self._batch_fn = torch.compile(draw_batch, dynamic=False) if compile else draw_batch
        self.compiled = compile
        self.grad_filter = make_filter(hyper.grokfast, hyper.grokfast_window, hyper.grokfast_alpha,
                                       hyper.grokfast_lamb, tuple(model.grad.shape), dev)
        self.optimizer = make_optimizer(optimizer, model, hyper, self.decay_mask, compile)
        self.compile_failed = ""  # why torch.compile could not be used here ("": it was, or was not asked)
        if compile:
            self._trial_compile(optimizer)

    def _trial_compile(self, optimizer: OptimizerPath) -> None:
        """Compile now, in one rolled-back step, so that a machine that cannot compile (no C++ compiler, no
        working Triton) trains uncompiled and says why, rather than failing at its first step. The step runs in
        the precision a capture will use: dynamo guards on the TF32 switch, and a mismatch would compile twice."""
        snapshot = self._snapshot()
        try:
            with self.precision.capturing(self.model.device):
                self._eager_step()
        except Exception as exc:  # noqa: BLE001 - only compiler failures are taken; the rest is re-raised
            if not type(exc).__module__.startswith(("torch._dynamo", "torch._inductor")):
                raise
            line = next((x for x in str(exc).splitlines() if x.strip()), "")
            self.compile_failed = f"{type(exc).__name__}: {line}"[:160]
            self._loss_fn, self._batch_fn, self.compiled = _loss, draw_batch, False
            self.optimizer = make_optimizer(optimizer, self.model, self.hyper, self.decay_mask, False)
        finally:
            self._restore(snapshot)

    def compile_note(self) -> str:
        """What the run folder's engine path adds for compilation: "", " + torch.compile", or why not."""
        if self.compile_failed:
            return f" (torch.compile failed, ran uncompiled: {self.compile_failed})"
        return COMPILED if self.compiled else ""

    def _snapshot(self) -> tuple[list[torch.Tensor], list[torch.Tensor], int]:
        """Everything a step changes (weights, optimizer and filter state, step counters), copied."""
        state = [self.model.flat, *self.optimizer.buffers(), self.step_count, *self.grad_filter.buffers()]
        return state, [t.clone() for t in state], self.steps_taken

    @torch.no_grad()
    def _restore(self, snapshot: tuple[list[torch.Tensor], list[torch.Tensor], int]) -> None:
        state, saved, taken = snapshot
        for t, s in zip(state, saved):
            t.copy_(s)
        self.steps_taken = taken

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
        if not self.optimizer.capturable:
            return "eager: the fused per-run optimizer path is not captured (use optimizer='tensor')"
        snapshot = self._snapshot()
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
                self._restore(snapshot)
                graph = torch.cuda.CUDAGraph()
                # thread_local: other threads may train their own groups (and sync their streams) meanwhile
                with torch.cuda.graph(graph, stream=stream, capture_error_mode="thread_local"):
                    loss = self._eager_step()
        except RuntimeError as exc:  # e.g. an op that cannot be captured on this build
            self._restore(snapshot)
            return f"eager: CUDA graph capture failed ({str(exc).splitlines()[0][:120]})"
        self.steps_taken = snapshot[2]  # capture ran the Python side once but no kernel
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
        self.step_count += 1
        self.steps_taken += 1
        self.optimizer.step(self.step_count, self.steps_taken)

    def member_state(self, e: int) -> dict[str, torch.Tensor]:
        """Optimizer (and gradient filter) state of one run (CPU tensors) for its checkpoint; the same for
        either path."""
        state = {name: self.optimizer.moment(e, name).detach().cpu().clone() for name in MOMENTS}
        return state | self.grad_filter.member_state(e)

    @torch.no_grad()
    def load_member_state(self, e: int, state: dict[str, torch.Tensor], step: int) -> None:
        """Restore run e's Adam moments (and gradient filter), taken after `step` optimizer steps."""
        self.grad_filter.load_member_state(e, state)
        for name in MOMENTS:
            t = state[name]
            if t.shape != (self.model.numel,):
                raise ValueError(f"{name}: expected {self.model.numel} values, found {tuple(t.shape)}")
            self.optimizer.load(e, name, t, step)
        self.step_count.fill_(step)
        self.steps_taken = step
