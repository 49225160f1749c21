"""The training loop for a group of runs (one run is a group of one): log-spaced evaluation of every run on
its full train/val/test splits, metrics as they come, checkpoints, exact resume, clean interrupts, curves and
a summary. What the run folders hold, and whether a folder may be written, is `rundir`'s business.

Host syncs happen only at evaluation points, log lines and checkpoints; each is marked below.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from groklab.store import rundir
from groklab.config import RunConfig, TrainConfig
from groklab.data.dataset import RunData, load_run_data
from groklab.engine.device import resolve_device  # noqa: F401  (benchmarks import it from here)
from groklab.engine.compile_cache import compiles
from groklab.engine.step import Engine
from groklab.engine.hyper import Hyper
from groklab.errors import GroklabError
from groklab.data.examples import stack
from groklab.training.console import Console, batch_line, config_lines, eval_line, header
from groklab.training.evaluation import Member, confirmed_grokked, eval_steps, evaluate_members, schedule
from groklab.training.interrupts import Interrupted, StopRequest, signal_name, stop_on_signals
from groklab.metrics import curve_marks, grokking_summary
from groklab.model.gpt import GPT
from groklab.plots import plot_curves
from groklab.engine.precision import check_device
from groklab.store.runfolder import RunFolder
from groklab.training.tensorboard import TensorBoard
from groklab.training.plan import finished_result, plan_run, plan_runs, snapshot_steps
from groklab.training.textrun import greedy_reconstructions, text_summary
from groklab.training.wandb_log import WandB, check_can_log

SPLITS = rundir.SPLITS
__all__ = ["Member", "OpenGroup", "eval_steps", "group_key", "open_group", "schedule", "train_group", "train_runs"]


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
    log: Callable[[str], None] | None  # None: the group says nothing
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
            p = plan_run(c, d, retry_failed)
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
               log: Callable[[str], None] | None = None, datas: Sequence[RunData] | None = None,
               on_steps: Callable[[int], None] | None = None, retry_failed: bool = False) -> OpenGroup:
    """Everything before the first step of a group: claim each run's folder, start or resume it, capture the
    step. The folders stay locked until the group is closed (train_group closes it)."""
    if datas is None:
        datas = [load_run_data(c.data, c.model) for c in configs]
    try:
        folders = {Path(c.train.out_dir).resolve() for c in configs}
    except RuntimeError as exc:  # a symbolic link to itself on the way (the CLI says which, check_out_path)
        raise GroklabError(f"an out_dir cannot be resolved: {exc}") from None
    if len(folders) != len(configs):
        raise GroklabError("each run of a group needs its own out_dir")
    if len({group_key(c, d) for c, d in zip(configs, datas)}) != 1:  # before any folder is touched
        raise GroklabError("runs in one group must share the model shape, vocabulary size, step budget, "
                           "gradient filter, evaluation schedule, early stop, device, step path and precision; "
                           "`train_many` groups them")
    check_device(configs[0].train.precision, resolve_device(configs[0].train.device))  # before any folder too
    check_can_log([c.train for c in configs])  # --wandb: a login, before any folder is touched
    members, resume, start = _claim(configs, datas, retry_failed)
    try:
        return _open(members, resume, start, argv, log, on_steps)
    except BaseException:
        for m in members:
            m.folder.close()
        raise


def build_engine(configs: Sequence[RunConfig], datas: Sequence[RunData]) -> tuple[GPT, Engine]:
    """The model of a group's runs, initialised from their seeds, and its engine (compiled, where the runs
    compile, in the engine's trial step): what opening a group builds before any folder is read."""
    mcfg, vocab = group_key(configs[0], datas[0])[:2]
    tcfg = configs[0].train
    device = resolve_device(tcfg.device)
    model = GPT(mcfg, vocab, len(configs), device)
    model.init_from_seeds([c.train.seed for c in configs])
    hyper = Hyper.build([c.optim for c in configs], [c.train.seed for c in configs],
                        [c.train.batch_size for c in configs], device)
    engine = Engine(model, hyper, stack([d.splits["train"] for d in datas], mcfg.block_size),
                    compile=compiles(tcfg.compile, device), precision=tcfg.precision)
    return model, engine


def _open(members: list[Member], resume: list[bool], start: int, argv: list[str] | None,
          log: Callable[[str], None] | None, on_steps: Callable[[int], None] | None) -> OpenGroup:
    tcfg = members[0].cfg.train
    E = len(members)
    # open_group checked that every member has the first one's group_key: build_engine's shape is theirs
    model, engine = build_engine([m.cfg for m in members], [m.data for m in members])
    mcfg, device = model.cfg, resolve_device(tcfg.device)
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
    console = Console(log, tcfg.verbosity)
    if any(resume):
        console.say(f"resuming {E} run(s) from step {start:,}")
    path = engine.capture_cuda_graph() if tcfg.cuda_graph else "eager: --no-cuda_graph"
    path += engine.compile_note()
    if engine.compile_failed:
        console.say(f"torch.compile failed on this machine; training uncompiled ({engine.compile_failed})")
    for e, m in enumerate(members):
        if resume[e]:
            dropped = m.folder.drop_stale_outputs()
            m.history = m.folder.resume(m.cfg, argv, start, path, engine.precision.record(), m.data)
            if dropped:
                console.say(f"{m.run_dir}: deleted {', '.join(dropped)}, computed from the weights at step "
                            f"{start:,} that training now goes on from")
        else:
            replaced = m.folder.start(m.cfg, argv, m.data, device, E, path, engine.precision.record())
            if replaced:  # said whatever the verbosity: an earlier start's results are gone
                console.say(f"{m.run_dir}: started afresh, deleting what an earlier start of it left: "
                            f"{', '.join(replaced)}", "quiet")
    return OpenGroup(members, model, engine, eval_sets, start, path, log, on_steps)


def train_runs(configs: Sequence[RunConfig], argv: list[str] | None = None,
               log: Callable[[str], None] | None = None, datas: Sequence[RunData] | None = None,
               on_steps: Callable[[int], None] | None = None, stop: StopRequest | None = None,
               retry_failed: bool = False,
               on_eval: Callable[[int, list[list[dict]]], None] | None = None) -> list[dict]:
    """Train these runs as one group and return their summaries (also written to each run's summary.json);
    a run that went non-finite gets {"status": "failed", ...} instead (and failed.json), and the others go on.
    A run its folder already holds finished returns that summary without training ("already": True); one that
    stopped part-way resumes. `datas`: each run's data, if the caller has loaded it. `on_steps(n)`: called as
    steps are taken, instead of the progress bar (the evaluation lines then go to `log`). `log`: where the
    group's lines go (the header, evaluations, messages), as much as each run's `verbosity` asks; None (the
    default): nothing is printed but the progress bar (`progress=False` turns it off too).
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


def _open_output(g: OpenGroup) -> tuple[Console, Any, str]:
    """The group's console (its header said), its progress bar, and the verbosity at which each evaluation
    gets a line: in a log (a sweep's) or with the bar off at normal, else only at verbose (the bar shows it)."""
    configs = [m.cfg for m in g.members]
    tcfg = configs[0].train
    console = Console(g.log, tcfg.verbosity)
    for line in header(configs, [m.data for m in g.members], g.model.numel, g.model.vocab_size,
                       g.model.cfg.block_size, str(g.model.device), g.path):
        console.say(line)
    for c in configs if console.shows("verbose") else []:
        console.say(f"config of {c.train.out_dir}:", "verbose")
        for line in config_lines(c):
            console.say(line, "verbose")
    from tqdm.auto import tqdm  # a widget in Jupyter, a text bar in a terminal

    shown = tcfg.progress and g.on_steps is None and tcfg.verbosity != "quiet"
    console.bar = tqdm(total=tcfg.max_steps, initial=g.start, unit="step", dynamic_ncols=True, file=sys.stderr,
                       desc=_bar_name(g.members), disable=None if shown else True)
    return console, console.bar, "normal" if g.on_steps is not None or console.bar.disable else "verbose"


def _loop(g: OpenGroup, stop: StopRequest, on_eval: Callable[[int, list[list[dict]]], None] | None) -> list[dict]:
    members, model, engine, eval_sets, start = g.members, g.model, g.engine, g.eval_sets, g.start
    tcfg = members[0].cfg.train
    device = model.device
    E = len(members)
    tb = TensorBoard.open(members, start)  # --tensorboard: None unless a run asked for it
    snapshots = snapshot_steps(tcfg)
    targets = schedule(tcfg.max_steps, tcfg.eval_points_per_decade, tcfg.eval_interval, after=start, extra=snapshots)
    console, bar, eval_level = _open_output(g)
    wb = WandB.open(members, start, console.say)  # --wandb: likewise
    taken = _Steps(g.on_steps, max(1, tcfg.max_steps // 200))  # a sweep's live line hears of steps between evals
    t0 = time.time() - ((members[0].history[-1].get("elapsed_s") or 0.0) if members[0].history else 0.0)
    step = saved = start

    def stopped() -> Interrupted:
        """Save where the loop stands (unless nothing was trained since the last save) and say so."""
        if step != saved:
            _save_checkpoint(members, model, engine, step)
        taken.flush()
        return Interrupted(stop.signum or 2, f"interrupted ({signal_name(stop.signum or 2)}) at step {step:,}")

    if _stopped_early_before(members, start, tcfg):
        targets = iter(())  # the run ended at its saved step; a stop there only kept it from saying so
        console.say(_early_stop_line(tcfg, E, start))
    try:
        for target in targets:
            while step < target and not stop:
                loss = engine.step()
                step += 1
                bar.update(1)
                taken.add(1)
                if tcfg.log_interval and step % tcfg.log_interval == 0:
                    last = [m.history[-1] for m in members if m.history and not m.failed]
                    console.say(batch_line(step, loss.tolist(), last))  # host sync
                if step % tcfg.checkpoint_interval == 0 and step != target:
                    _save_checkpoint(members, model, engine, step)
                    saved = step
            if stop and step < target:
                raise stopped()
            taken.flush()
            if device.type == "cuda":  # wait here, without the GIL, so that groups in other threads go on launching
                torch.cuda.current_stream(device).synchronize()
            for line in evaluate_members(members, model, eval_sets, step, time.time() - t0):
                console.say(line, "quiet")  # a failure is said whatever the verbosity
            _show_evaluation(members, step, bar, console, eval_level)
            _after_evaluation(g, step, tb, wb, on_eval, step in snapshots)
            if all(m.failed for m in members):
                break
            done = confirmed_grokked(members, tcfg.early_stop_evals, tcfg.grok_threshold)
            if step % tcfg.checkpoint_interval == 0 or step == tcfg.max_steps or done or stop:
                _save_checkpoint(members, model, engine, step)
                saved = step
            if stop:
                raise stopped()
            if done:
                console.say(_early_stop_line(tcfg, E, step))
                break
    except BaseException:
        if wb is not None:
            wb.close(None)  # interrupted or broken: each W&B run is finished as not done
        raise
    finally:
        bar.close()
        console.bar = None
        if tb is not None:
            tb.close()
    taken.add(tcfg.max_steps - step)  # an early stop finishes the run's share of the work
    taken.flush()
    return _results(g, time.time() - t0, wb)


def _stopped_early_before(members: Sequence[Member], start: int, tcfg: TrainConfig) -> bool:
    """Whether a resumed group had already met its early stop at the step it was saved at: a stop (Ctrl-C)
    during that last evaluation saves and raises before the loop can break, so the test is applied again to
    the kept history, as the uninterrupted loop applied it after that evaluation."""
    healthy = [m for m in members if not m.failed]
    return (start > 0 and bool(healthy) and all(m.history and m.history[-1]["step"] == start for m in healthy)
            and confirmed_grokked(members, tcfg.early_stop_evals, tcfg.grok_threshold))


def _early_stop_line(tcfg: TrainConfig, runs: int, step: int) -> str:
    return (f"stopping at step {step:,}: val accuracy has stayed ≥ {tcfg.grok_threshold} for "
            f"{tcfg.early_stop_evals} evaluations" + (" in every run" if runs > 1 else ""))


def _results(g: OpenGroup, wall: float, wb: WandB | None) -> list[dict]:
    """Each run's summary (a memorised text's reconstruction too), or its failure."""
    members = g.members
    texts = [m.data.text if not m.failed else None for m in members]
    recon = greedy_reconstructions(g.model, [m.data.tokenizer for m in members], texts) if any(texts) else texts
    results = [m.failed if m.failed else _finish(m, g.model.device, wall, r) for m, r in zip(members, recon)]
    if wb is not None:
        wb.close(results)
    return results


class _Steps:
    """Steps taken, passed on to `on_steps` (a sweep's live line) every `every` steps and at each flush."""

    def __init__(self, on_steps: Callable[[int], None] | None, every: int):
        self.on_steps, self.every, self.pending = on_steps, every, 0

    def add(self, n: int) -> None:
        if self.on_steps is not None:
            self.pending += n
            if self.pending >= self.every:
                self.flush()

    def flush(self) -> None:
        if self.on_steps is not None and self.pending:
            self.on_steps(self.pending)
            self.pending = 0


def _after_evaluation(g: OpenGroup, step: int, tb: TensorBoard | None, wb: WandB | None,
                      on_eval: Callable[[int, list[list[dict]]], None] | None, snapshot: bool) -> None:
    """What else each evaluation feeds: TensorBoard, W&B, the caller's hook, the weights' snapshot."""
    if tb is not None:
        tb.write(g.members, g.model.flat, step)
    if wb is not None:
        wb.write(g.members, g.model.flat, step)
    if on_eval is not None:
        on_eval(step, [m.history for m in g.members])
    if snapshot:
        for e, m in enumerate(g.members):
            if not m.failed:
                m.folder.snapshot(step, g.model.member_state(e), g.model.cfg, m.data.tokenizer)  # host sync


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


def _show_evaluation(members: Sequence[Member], step: int, bar, console: Console, level: str) -> None:
    """The latest evaluation on the bar (always) and as a line (at `level`)."""
    healthy = [m.history[-1] for m in members if not m.failed and m.history and m.history[-1]["step"] == step]
    if not healthy:
        return
    if len(members) == 1:
        r = healthy[0]
        bar.set_postfix(train_acc=f"{r['train_acc']:.3f}", val_acc=f"{r['val_acc']:.3f}", refresh=False)
    else:
        val = [r["val_acc"] for r in healthy]
        bar.set_postfix(val_acc_mean=f"{sum(val) / len(val):.3f}", refresh=False)
    console.say(eval_line(step, healthy), level)


def _bar_name(members: Sequence[Member]) -> str:
    """The progress bar's label: the run's folder name, or how many runs train together."""
    return members[0].run_dir.name if len(members) == 1 else f"{len(members)} runs"


def _finish(m: Member, device: torch.device, wall: float, reconstruction: dict | None = None) -> dict:
    summary = grokking_summary(m.history, m.cfg.train.grok_threshold)
    if reconstruction is not None:  # a text to memorise: its own measures, no grokking verdict
        summary.update(text_summary(reconstruction))
    summary.update({"status": "done", "run_dir": str(m.run_dir), "steps": m.history[-1]["step"] if m.history else 0,
                    "wall_time_s": round(wall, 2), "device": str(device)})
    m.folder.finish(summary)
    if m.cfg.train.plot and m.history:
        draw_curves(m.history, m.run_dir, m.cfg, summary, text=reconstruction is not None)
    return summary


def draw_curves(history: list[dict], run_dir: Path, cfg: RunConfig, summary: dict, text: bool) -> None:
    """The run's curves.png: its evaluations, titled by what the run is, marked where it memorised and grokked."""
    d = cfg.data
    what = d.text_file or d.data_dir or f"{d.operators} mod {d.prime}"
    batch = f"batch {cfg.train.batch_size}" if cfg.train.batch_size else "full batch"
    title = (f"{what} · {cfg.model.n_layer} layer(s), d={cfg.model.n_embd} · {batch}"
             f" · lr {cfg.optim.learning_rate:g} · wd {cfg.optim.weight_decay:g} · seed {cfg.train.seed}")
    plot_curves(history, run_dir / rundir.CURVES_FILE, title, curve_marks(summary, text), text=text)
