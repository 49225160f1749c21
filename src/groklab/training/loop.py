"""The training loop for a group of runs (one run is a group of one): log-spaced evaluation of every run on
its full train/val/test splits, metrics as they come, checkpoints, exact resume, clean interrupts, curves and
a summary. What the run folders hold, and whether a folder may be written, is `rundir`'s business.

Host syncs happen only at evaluation points, log lines and checkpoints; each is marked below.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from groklab.store import rundir
from groklab.config import ModelConfig, RunConfig
from groklab.data.dataset import RunData, load_run_data
from groklab.engine.device import resolve_device  # noqa: F401  (benchmarks import it from here)
from groklab.engine.step import Engine
from groklab.engine.hyper import Hyper
from groklab.engine.evaluate import evaluate
from groklab.errors import GroklabError
from groklab.data.examples import stack
from groklab.training.interrupts import Interrupted, StopRequest, signal_name, stop_on_signals
from groklab.metrics import grokking_summary
from groklab.model.gpt import GPT
from groklab.plots import plot_curves
from groklab.engine.precision import check_device
from groklab.store.runfolder import RunFolder
from groklab.training.tensorboard import TensorBoard
from groklab.training.textrun import greedy_reconstructions, text_summary
from groklab.training.wandb_log import WandB

SPLITS = rundir.SPLITS


def _log_points(max_steps: int, per_decade: int) -> Iterator[int]:
    k = 0
    while (s := round(10 ** (k / per_decade))) <= max_steps:
        yield s
        k += 1


def schedule(max_steps: int, per_decade: int, interval: int = 0, after: int = 0,
             extra: Sequence[int] = ()) -> Iterator[int]:
    """The evaluation steps after step `after`, ascending, without repeats: log-spaced (per_decade a decade,
    from step 1), every `interval` steps if set, the `extra` steps, and the last step. Lazy, so a schedule of
    10^12 steps costs nothing until it is walked."""
    parts = [_log_points(max_steps, per_decade), iter(sorted(extra)), iter((max_steps,))]
    if interval:
        first = (after // interval + 1) * interval
        parts.append(iter(range(first, max_steps + 1, interval)))
    return (s for s, _ in itertools.groupby(heapq.merge(*parts)) if after < s <= max_steps)


def eval_steps(max_steps: int, per_decade: int, interval: int = 0) -> list[int]:
    """Every evaluation step of a run from its start (for tests and small schedules)."""
    return list(schedule(max_steps, per_decade, interval))


@dataclass
class Member:
    """One run of the group: its config, folder (held, locked, from opening to the end), data and history."""

    cfg: RunConfig
    folder: RunFolder
    data: RunData
    history: list[dict] = field(default_factory=list)
    failed: dict | None = None  # {"step", "reason"} once the run has gone non-finite; it is then left alone

    @property
    def run_dir(self) -> Path:
        return self.folder.path


def group_key(cfg: RunConfig, data: RunData) -> tuple:
    """What the runs of one group must share: the model shape (context resolved from the data), the
    vocabulary size, the kind of gradient filter (its state has one shape a group), and every loop setting
    the group applies to all of its runs at once."""
    t = cfg.train
    o = cfg.optim
    return (dataclasses.replace(cfg.model, block_size=data.block_size), data.tokenizer.vocab_size,
            o.grokfast, o.grokfast_window if o.grokfast == "ma" else None, t.max_steps,
            t.eval_points_per_decade, t.eval_interval, t.device, t.early_stop_evals, t.grok_threshold,
            t.checkpoint_interval, t.cuda_graph, t.compile, t.precision, t.snapshots_per_decade, t.snapshot_interval)


def _group_shape(members: Sequence[Member]) -> tuple[ModelConfig, int]:
    key = group_key(members[0].cfg, members[0].data)  # open_group checked that every member has this key
    return key[0], key[1]


@dataclass
class OpenGroup:
    """A group set up to train: runs' folders claimed and written (or resumed), weights on the device, its
    step captured. Opening and training are separate so that several groups can be captured one after another
    and then trained at once (a CUDA graph capture must not overlap other work in the process)."""

    members: list[Member]
    model: GPT
    engine: Engine
    eval_sets: dict
    start: int
    path: str
    log: Callable[[str], None]
    on_steps: Callable[[int], None] | None

    def close(self) -> None:
        """Let go of the run folders' locks (idempotent)."""
        for m in self.members:
            m.folder.close()


def _claim(configs: Sequence[RunConfig], datas: Sequence[RunData],
           retry_failed: bool) -> tuple[list[Member], list[bool], int]:
    """Lock every run folder, then decide under the lock (what a plan said before may have changed): every
    run must be one to start or to resume, all from the same step -> (members, which resume, that step).
    Locks are released if anything fails."""
    members: list[Member] = []
    resume: list[bool] = []
    try:
        starts = set()
        for c, d in zip(configs, datas):
            m = Member(c, RunFolder(Path(c.train.out_dir)), d)
            members.append(m)
            m.folder.claim()
            p = rundir.plan(c, d, retry_failed)
            if p.kind in ("done", "failed"):
                raise GroklabError(f"{m.run_dir}: {'finished' if p.kind == 'done' else 'failed'} while this command "
                                   "was starting (another process trained it?); run the command again")
            starts.add(p.step if p.kind == "resume" else 0)
            resume.append(p.kind == "resume")
        if len(starts) != 1:
            raise GroklabError("runs of this group were saved at different steps; resume them separately")
        return members, resume, starts.pop()
    except BaseException:
        for m in members:
            m.folder.close()
        raise


def open_group(configs: Sequence[RunConfig], argv: list[str] | None = None,
               log: Callable[[str], None] = print, datas: Sequence[RunData] | None = None,
               on_steps: Callable[[int], None] | None = None, retry_failed: bool = False) -> OpenGroup:
    """Everything before the first step of a group: claim each run's folder, start or resume it, capture the
    step. The folders stay locked until the group is closed (train_group closes it)."""
    if datas is None:
        datas = [load_run_data(c.data, c.model) for c in configs]
    if len({Path(c.train.out_dir).resolve() for c in configs}) != len(configs):
        raise GroklabError("each run of a group needs its own out_dir")
    if len({group_key(c, d) for c, d in zip(configs, datas)}) != 1:  # before any folder is touched
        raise GroklabError("runs in one group must share the model shape, vocabulary size, step budget, "
                           "gradient filter, evaluation schedule, early stop, device, step path and precision; "
                           "`train_many` groups them")
    check_device(configs[0].train.precision, resolve_device(configs[0].train.device))  # before any folder too
    members, resume, start = _claim(configs, datas, retry_failed)
    try:
        return _open(members, resume, start, argv, log, on_steps)
    except BaseException:
        for m in members:
            m.folder.close()
        raise


def _open(members: list[Member], resume: list[bool], start: int, argv: list[str] | None,
          log: Callable[[str], None], on_steps: Callable[[int], None] | None) -> OpenGroup:
    mcfg, vocab = _group_shape(members)
    tcfg = members[0].cfg.train
    device = resolve_device(tcfg.device)
    E = len(members)

    model = GPT(mcfg, vocab, E, device)
    model.init_from_seeds([m.cfg.train.seed for m in members])
    hyper = Hyper.build([m.cfg.optim for m in members], [m.cfg.train.seed for m in members],
                        [m.cfg.train.batch_size for m in members], device)
    engine = Engine(model, hyper, stack([m.data.splits["train"] for m in members], mcfg.block_size),
                    compile=tcfg.compile, precision=tcfg.precision)
    eval_sets = {}
    for split in SPLITS:
        parts = [m.data.scored[split] for m in members]
        if any(len(p) for p in parts):
            eval_sets[split] = stack(parts, mcfg.block_size).to(device)

    # the global generator drives dropout only; seeded so that a run is the same in any process (torch seeds
    # it at random per process otherwise), and restored from the checkpoint on resume
    torch.manual_seed(members[0].cfg.train.seed)
    for e, m in enumerate(members):
        if resume[e]:
            weights, optim, step = m.folder.load_state(mcfg)
            try:
                model.load_member_state(e, weights)
                engine.load_member_state(e, optim, step)
            except (ValueError, KeyError) as exc:
                raise GroklabError(f"{m.run_dir / rundir.STATE_FILE}: does not fit this run's model ({exc})") from None
    if any(resume):
        log(f"resuming {E} run(s) from step {start:,}")
    path = engine.capture_cuda_graph() if tcfg.cuda_graph else "eager: --no-cuda_graph"
    path += " + torch.compile" if tcfg.compile else ""
    for e, m in enumerate(members):
        if resume[e]:
            m.history = m.folder.resume(m.cfg, argv, start, path, engine.precision.record())
        else:
            m.folder.start(m.cfg, argv, m.data, device, E, path, engine.precision.record())
    return OpenGroup(members, model, engine, eval_sets, start, path, log, on_steps)


def plan_runs(configs: Sequence[RunConfig], datas: Sequence[RunData], retry_failed: bool = False) -> list[rundir.Plan]:
    """What each run's folder holds for it now (read-only; refusals raise)."""
    return [rundir.plan(c, d, retry_failed) for c, d in zip(configs, datas)]


def finished_result(cfg: RunConfig, plan: rundir.Plan) -> dict:
    """What a run that needs no training returns: its summary (done) or its failure (failed)."""
    run_dir = Path(cfg.train.out_dir)
    if plan.kind == "done":
        return {**rundir.read_summary(run_dir), "status": "done", "run_dir": str(run_dir), "already": True}
    assert plan.failure is not None
    return {**plan.failure, "status": "failed", "run_dir": str(run_dir), "already": True}


def train_runs(configs: Sequence[RunConfig], argv: list[str] | None = None,
               log: Callable[[str], None] = print, datas: Sequence[RunData] | None = None,
               on_steps: Callable[[int], None] | None = None, stop: StopRequest | None = None,
               retry_failed: bool = False,
               on_eval: Callable[[int, list[list[dict]]], None] | None = None) -> list[dict]:
    """Train these runs as one group and return their summaries (also written to each run's summary.json);
    a run that went non-finite gets {"status": "failed", ...} instead (and failed.json), and the others go on.
    A run its folder already holds finished returns that summary without training ("already": True); one that
    stopped part-way resumes. `datas`: each run's data, if the caller has loaded it. `on_steps(n)`: called as
    steps are taken, instead of the progress bar and the printed evaluation lines (which then go to `log`).
    SIGINT/SIGTERM stop the group at a step boundary, saved: Interrupted is raised (see interrupts).
    `on_eval(step, histories)`: called after every evaluation; histories[i] holds the metric rows so far of the
    i-th run that trains (as in its metrics.jsonl), enough to redraw a live curve in a notebook."""
    if datas is None:
        datas = [load_run_data(c.data, c.model) for c in configs]
    plans = plan_runs(configs, datas, retry_failed)
    results: list[dict | None] = [None if p.kind in ("fresh", "resume") else finished_result(c, p)
                                  for c, p in zip(configs, plans)]
    todo = [i for i, r in enumerate(results) if r is None]
    if todo:
        with stop_on_signals(stop) as stop:
            group = open_group([configs[i] for i in todo], argv, log, [datas[i] for i in todo], on_steps,
                               retry_failed)
            for i, r in zip(todo, train_group(group, stop, on_eval)):
                results[i] = r
    return [r for r in results if r is not None]


def train_group(g: OpenGroup, stop: StopRequest | None = None,
                on_eval: Callable[[int, list[list[dict]]], None] | None = None) -> list[dict]:
    """The training loop of an opened group, on the current CUDA stream; summaries as `train_runs`. Closes
    the group (its folders' locks) when it ends, however it ends."""
    try:
        return _loop(g, stop if stop is not None else StopRequest(), on_eval)
    finally:
        g.close()


def _loop(g: OpenGroup, stop: StopRequest, on_eval: Callable[[int, list[list[dict]]], None] | None) -> list[dict]:
    members, model, engine, eval_sets, start, log, on_steps = (g.members, g.model, g.engine, g.eval_sets, g.start,
                                                              g.log, g.on_steps)
    configs = [m.cfg for m in members]
    tcfg = configs[0].train
    device = model.device
    E = len(members)
    tb = TensorBoard.open(members, start)  # --tensorboard: None unless a run asked for it
    wb = WandB.open(members, start, log)  # --wandb: likewise

    if E == 1:
        import json

        log("config: " + json.dumps(configs[0].to_dict(), sort_keys=True))
    log(f"{E} run(s) · {model.numel:,} parameters each · vocab {model.vocab_size} · context {model.cfg.block_size} · "
        f"{len(members[0].data.splits['train']):,} train examples · device {device} · step: {g.path}")

    snapshots = set(schedule(tcfg.max_steps, tcfg.snapshots_per_decade)) if tcfg.snapshots_per_decade else set()
    if tcfg.snapshot_interval:  # linearly spaced too: the phases of a long run need more than log spacing gives
        snapshots |= set(range(tcfg.snapshot_interval, tcfg.max_steps + 1, tcfg.snapshot_interval))
    targets = schedule(tcfg.max_steps, tcfg.eval_points_per_decade, tcfg.eval_interval, after=start, extra=snapshots)
    from tqdm.auto import tqdm  # a widget in Jupyter, a text bar in a terminal

    bar = tqdm(total=tcfg.max_steps, initial=start, unit="step", dynamic_ncols=True,
               disable=None if tcfg.progress and on_steps is None else True, file=sys.stderr)
    say = log if on_steps is not None else None
    t0 = time.time() - ((members[0].history[-1].get("elapsed_s") or 0.0) if members[0].history else 0.0)
    step = saved = start
    reported = start

    def stopped() -> Interrupted:
        """Save where the loop stands (unless nothing was trained since the last save) and say so."""
        if step != saved:
            _save_checkpoint(members, model, engine, step)
        if on_steps is not None:
            on_steps(step - reported)
        return Interrupted(stop.signum or 2, f"interrupted ({signal_name(stop.signum or 2)}) at step {step:,}")

    try:
        for target in targets:
            while step < target and not stop:
                loss = engine.step()
                step += 1
                bar.update(1)
                if tcfg.log_interval and step % tcfg.log_interval == 0:
                    log(f"step {step}: batch loss " + " ".join(f"{v:.4f}" for v in loss.tolist()))  # host sync
                if step % tcfg.checkpoint_interval == 0 and step != target:
                    _save_checkpoint(members, model, engine, step)
                    saved = step
            if stop and step < target:
                raise stopped()
            if on_steps is not None:
                on_steps(step - reported)
                reported = step
            if device.type == "cuda":  # wait here, without the GIL, so that groups in other threads go on launching
                torch.cuda.current_stream(device).synchronize()
            _evaluate_all(members, model, eval_sets, step, time.time() - t0, bar, say)
            if tb is not None:
                tb.write(members, model.flat, step)
            if wb is not None:
                wb.write(members, model.flat, step)
            if on_eval is not None:
                on_eval(step, [m.history for m in members])
            if step in snapshots:
                for e, m in enumerate(members):
                    if not m.failed:
                        m.folder.snapshot(step, model.member_state(e), model.cfg, m.data.tokenizer)  # host sync
            if all(m.failed for m in members):
                break
            done = _confirmed_grokked(members, tcfg.early_stop_evals, tcfg.grok_threshold)
            if step % tcfg.checkpoint_interval == 0 or step == tcfg.max_steps or done or stop:
                _save_checkpoint(members, model, engine, step)
                saved = step
            if stop:
                raise stopped()
            if done:
                log(f"stopping at step {step:,}: val accuracy has stayed ≥ {tcfg.grok_threshold} for "
                    f"{tcfg.early_stop_evals} evaluations" + (" in every run" if E > 1 else ""))
                break
    except BaseException:
        if wb is not None:
            wb.close(None)  # interrupted or broken: each W&B run is finished as not done
        raise
    finally:
        bar.close()
        if tb is not None:
            tb.close()
    if on_steps is not None and step < tcfg.max_steps:
        on_steps(tcfg.max_steps - reported)  # an early stop finishes the run's share of the work
    texts = [m.data.text if not m.failed else None for m in members]
    recon = greedy_reconstructions(model, [m.data.tokenizer for m in members], texts) if any(texts) else texts
    results = [m.failed if m.failed else _finish(m, device, time.time() - t0, r) for m, r in zip(members, recon)]
    if wb is not None:
        wb.close(results)
    return results


def _save_checkpoint(members: Sequence[Member], model: GPT, engine: Engine, step: int) -> None:
    """Each healthy run's checkpoint; a run whose numbers are no longer finite is marked failed instead and
    keeps its last finite checkpoint (a host sync: the rows are copied to the CPU)."""
    for e, m in enumerate(members):
        if m.failed:
            continue
        ok = m.folder.checkpoint(step, model.member_state(e), engine.member_state(e), model.cfg,
                                 m.data.tokenizer, len(members))
        if not ok:
            m.failed = m.folder.fail(f"non-finite weights or optimizer state at step {step:,} (its last finite "
                                     "checkpoint is kept)", step)


def _confirmed_grokked(members: Sequence[Member], k: int, threshold: float) -> bool:
    """Early stop: every (healthy) run's last k evaluations all have val accuracy >= threshold."""
    if k <= 0:
        return False
    return all(len(m.history) >= k and all(h["val_acc"] >= threshold for h in m.history[-k:])
               for m in members if not m.failed)


def _evaluate_all(members: Sequence[Member], model: GPT, eval_sets: dict, step: int, elapsed: float, bar,
                  log: Callable[[str], None] | None) -> None:
    """Evaluate every run; a run whose weights or losses are no longer finite is marked failed here."""
    results = {split: evaluate(model, stacked) for split, stacked in eval_sets.items()}
    results = {s: tuple(t.tolist() for t in r) for s, r in results.items()}  # host sync
    finite_weights = torch.isfinite(model.flat).all(dim=1).tolist()  # host sync
    for e, m in enumerate(members):
        if m.failed:
            continue
        row = {"step": step, "elapsed_s": round(elapsed, 3)}
        for split in SPLITS:
            has = split in results and len(m.data.scored[split]) > 0
            row[f"{split}_loss"] = results[split][0][e] if has else None
            row[f"{split}_acc"] = results[split][1][e] if has else None
            row[f"{split}_token_acc"] = results[split][2][e] if has else None
        bad = [k for k, v in row.items() if k.endswith("_loss") and v is not None and not math.isfinite(v)]
        if bad or not finite_weights[e]:
            what = "weights" if not finite_weights[e] else bad[0].replace("_", " ")
            m.failed = m.folder.fail(f"non-finite {what} at step {step:,}", step)
            _emit(f"{m.run_dir}: {m.failed['reason']}; the run is stopped, the others go on", bar, log)
            continue
        m.history.append(row)
        m.folder.append(row)
    healthy = [m for m in members if not m.failed]
    if not healthy:
        return
    val = [m.history[-1]["val_acc"] for m in healthy]
    train = [m.history[-1]["train_acc"] for m in healthy]
    if len(members) == 1:
        r = members[0].history[-1]
        bar.set_postfix(train_acc=f"{r['train_acc']:.3f}", val_acc=f"{r['val_acc']:.3f}", refresh=False)
        test = "" if r["test_acc"] is None else f" | test loss {r['test_loss']:.4f} acc {r['test_acc']:.4f}"
        line = (f"step {step}: train loss {r['train_loss']:.4f} acc {r['train_acc']:.4f} | "
                f"val loss {r['val_loss']:.4f} acc {r['val_acc']:.4f}{test}")
    else:
        line = (f"step {step}: train acc mean {sum(train) / len(train):.3f} | val acc mean {sum(val) / len(val):.3f}"
                f" min {min(val):.3f} max {max(val):.3f}")
        bar.set_postfix(val_acc_mean=f"{sum(val) / len(val):.3f}", refresh=False)
    _emit(line, bar, log)


def _emit(line: str, bar, log: Callable[[str], None] | None) -> None:
    """An evaluation's line: to the sweep's log if there is one, else under the progress bar (or plainly
    printed when the bar is off)."""
    if log is not None:
        log(line)
    elif bar.disable:
        print(line, flush=True)
    else:
        bar.write(line, file=sys.stderr)


def _finish(m: Member, device: torch.device, wall: float, reconstruction: dict | None = None) -> dict:
    summary = grokking_summary(m.history, m.cfg.train.grok_threshold)
    if reconstruction is not None:  # a text to memorise: its own measures, no grokking verdict
        summary.update(text_summary(reconstruction))
    summary.update({"status": "done", "run_dir": str(m.run_dir), "steps": m.history[-1]["step"] if m.history else 0,
                    "wall_time_s": round(wall, 2), "device": str(device)})
    m.folder.finish(summary)
    if m.cfg.train.plot and m.history:
        d = m.cfg.data
        what = d.text_file or d.data_dir or f"{d.operators} mod {d.prime}"
        batch = f"batch {m.cfg.train.batch_size}" if m.cfg.train.batch_size else "full batch"
        title = (f"{what} · {m.cfg.model.n_layer} layer(s), d={m.cfg.model.n_embd} · {batch}"
                 f" · lr {m.cfg.optim.learning_rate:g} · wd {m.cfg.optim.weight_decay:g} · seed {m.cfg.train.seed}")
        text = reconstruction is not None
        marks = {"memorised": summary["steps_to_memorise"]} | ({} if text else {"grokked": summary["steps_to_grok"]})
        plot_curves(m.history, m.run_dir / rundir.CURVES_FILE, title, marks, text=text)
    return summary
