"""The training loop for a group of runs (one run is a group of one): log-spaced evaluation of every run on
its full train/val/test splits, metrics as they come, checkpoints, exact resume, curves and a summary.

Host syncs happen only at evaluation points, log lines and checkpoints; each is marked below.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import torch

import groklab
from groklab import checkpoint as ckpt
from groklab.config import ModelConfig, RunConfig
from groklab.dataset import RunData, load_run_data
from groklab.engine import Engine, Hyper, evaluate
from groklab.errors import GroklabError
from groklab.examples import stack
from groklab.files import atomic_write, write_json
from groklab.metrics import grokking_summary
from groklab.model import GPT
from groklab.plots import plot_curves
from groklab.tb import TensorBoard
from groklab.wandb_log import WandB

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
FAILED_FILE = "failed.json"
CURVES_FILE = "curves.png"
SPLITS = ("train", "val", "test")


def eval_steps(max_steps: int, per_decade: int, interval: int = 0) -> list[int]:
    """Log-spaced steps (per_decade a decade, from step 1), every `interval` steps if set, and the last step."""
    points = {max_steps}
    k = 0
    while (s := round(10 ** (k / per_decade))) <= max_steps:
        points.add(s)
        k += 1
    if interval:
        points.update(range(interval, max_steps + 1, interval))
    return sorted(points)


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise GroklabError("device: --device cuda was asked for, but this torch build sees no CUDA GPU")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


@dataclass
class Member:
    """One run of the group: its config, directory, data and evaluation history."""

    cfg: RunConfig
    run_dir: Path
    data: RunData
    history: list[dict] = field(default_factory=list)
    failed: dict | None = None  # {"step", "reason"} once the run has gone non-finite; it is then left alone


def group_key(cfg: RunConfig, data: RunData) -> tuple:
    """What the runs of one group must share: the model shape (context resolved from the data), the
    vocabulary size, the kind of gradient filter (its state has one shape a group), and every loop setting
    the group applies to all of its runs at once."""
    t = cfg.train
    o = cfg.optim
    return (dataclasses.replace(cfg.model, block_size=data.block_size), data.tokenizer.vocab_size,
            o.grokfast, o.grokfast_window if o.grokfast == "ma" else None, t.max_steps,
            t.eval_points_per_decade, t.eval_interval, t.device, t.early_stop_evals, t.grok_threshold,
            t.checkpoint_interval, t.cuda_graph, t.compile, t.resume)


def _group_shape(members: Sequence[Member]) -> tuple[ModelConfig, int]:
    keys = {group_key(m.cfg, m.data) for m in members}
    if len(keys) != 1:
        raise GroklabError("runs in one group must share the model shape, vocabulary size, step budget, "
                           "gradient filter, evaluation schedule, early stop, device and step path; `train_many` groups them")
    key = keys.pop()
    return key[0], key[1]


def _refuse_overwrite(members: Sequence[Member]) -> None:
    """A finished or resumable run is never overwritten; a folder whose run was killed before its first
    checkpoint holds nothing to keep, and is started over."""
    for m in members:
        if (m.run_dir / SUMMARY_FILE).exists() or (m.run_dir / ckpt.STATE_FILE).exists():
            raise GroklabError(
                f"{m.run_dir} already holds a run; use --resume to continue it, or choose another --out_dir"
            )


def unfinished(run_dir: str | Path) -> int | None:
    """The checkpointed step of a run that was stopped before its end (killed, interrupted); else None."""
    run_dir = Path(run_dir)
    if (run_dir / SUMMARY_FILE).exists() or (run_dir / FAILED_FILE).exists():
        return None
    return ckpt.saved_step(run_dir)


def _prepare_dirs(members: Sequence[Member], argv: list[str] | None, device: torch.device, E: int,
                  engine_path: str) -> None:
    for m in members:
        m.run_dir.mkdir(parents=True, exist_ok=True)
        for name, text in m.data.files().items():
            atomic_write(m.run_dir / "data" / name, text)
        m.data.tokenizer.save(m.run_dir / "vocab.json")
        write_json(m.run_dir / "meta.json", {
            "groklab_version": groklab.__version__, "torch_version": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(), "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
            "git_commit": _git_commit(), "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "group_size": E, "engine": engine_path, "host": platform.node(), "pid": os.getpid(), "resumes": [],
        })
        (m.run_dir / METRICS_FILE).unlink(missing_ok=True)
        # config last: a directory with config.json is a run that can be resumed or sampled
        write_json(m.run_dir / ckpt.CONFIG_FILE, {"config": m.cfg.to_dict(), "argv": argv})


def _check_resumable(m: Member) -> None:
    saved = RunConfig.from_dict(ckpt.read_json(m.run_dir / ckpt.CONFIG_FILE)["config"])
    for section in ("data", "model", "optim"):
        old, new = getattr(saved, section), getattr(m.cfg, section)
        for f in dataclasses.fields(old):
            if getattr(old, f.name) != getattr(new, f.name):
                raise GroklabError(
                    f"{m.run_dir}: cannot resume with {f.name}={getattr(new, f.name)!r}; the run was started "
                    f"with {getattr(old, f.name)!r}"
                )


def _write_history(m: Member, sync: bool = False) -> None:
    """The whole metrics file, rewritten atomically at each evaluation (a few hundred lines at most): a kill
    at any instant leaves the previous file or the new one, never a torn line. fsynced with each checkpoint."""
    atomic_write(m.run_dir / METRICS_FILE, "".join(json.dumps(h) + "\n" for h in m.history), sync=sync)


def _load_history(path: Path, upto: int) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        try:
            row = json.loads(line)
            keep = int(row["step"]) <= upto
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise GroklabError(f"{path}:{n}: not a metrics line written by groklab; it was not loaded "
                               "(move the file away to resume without the earlier history)") from None
        if keep:
            rows.append(row)
    return rows


def _save_checkpoint(members: Sequence[Member], model: GPT, engine: Engine, step: int) -> None:
    for e, m in enumerate(members):
        if m.failed:  # keep its last finite checkpoint
            continue
        weights = model.member_state(e)  # host sync: copies this run's rows to the CPU
        # the state file last: it is what a resume starts from, so a kill between the two files leaves an older
        # state that the resume replays past, never model weights older than the state (which a resume at the
        # last step would keep as the run's final weights)
        ckpt.save_weights(m.run_dir, weights, step, vocab=m.data.tokenizer.to_dict())
        ckpt.save_state(m.run_dir, weights, engine.member_state(e), step, {"group_size": len(members)})
        _write_history(m, sync=True)


@dataclass
class OpenGroup:
    """A group set up to train: runs' folders written (or resumed), weights on the device, its step captured.
    Opening and training are separate so that several groups can be captured one after another and then
    trained at once (a CUDA graph capture must not overlap other work in the process)."""

    members: list[Member]
    model: GPT
    engine: Engine
    eval_sets: dict
    start: int
    path: str
    log: Callable[[str], None]
    on_steps: Callable[[int], None] | None


def open_group(configs: Sequence[RunConfig], argv: list[str] | None = None,
               log: Callable[[str], None] = print, datas: Sequence[RunData] | None = None,
               on_steps: Callable[[int], None] | None = None) -> OpenGroup:
    """Everything before the first step of `train_runs`: load or resume each run, capture the step."""
    if datas is None:
        datas = [load_run_data(c.data, c.model) for c in configs]
    members = [Member(c, Path(c.train.out_dir), d) for c, d in zip(configs, datas)]
    if len({m.run_dir.resolve() for m in members}) != len(members):
        raise GroklabError("each run of a group needs its own out_dir")
    mcfg, vocab = _group_shape(members)
    tcfg = configs[0].train
    device = resolve_device(tcfg.device)
    E = len(members)

    model = GPT(mcfg, vocab, E, device)
    model.init_from_seeds([m.cfg.train.seed for m in members])
    hyper = Hyper.build([m.cfg.optim for m in members], [m.cfg.train.seed for m in members],
                        [m.cfg.train.batch_size for m in members], device)
    engine = Engine(model, hyper, stack([m.data.splits["train"] for m in members], mcfg.block_size),
                    compile=tcfg.compile)
    eval_sets = {}
    for split in SPLITS:
        parts = [m.data.scored[split] for m in members]
        if any(len(p) for p in parts):
            eval_sets[split] = stack(parts, mcfg.block_size).to(device)

    # the global generator drives dropout only; seeded so that a run is the same in any process (torch seeds
    # it at random per process otherwise), and restored from the checkpoint on resume
    torch.manual_seed(members[0].cfg.train.seed)
    start = 0
    if tcfg.resume:
        for e, m in enumerate(members):
            if not (m.run_dir / ckpt.STATE_FILE).exists():
                raise GroklabError(f"{m.run_dir}: nothing to resume (no {ckpt.STATE_FILE}); start it without --resume")
            _check_resumable(m)
            weights, optim, meta = ckpt.load_state(m.run_dir)
            model.load_member_state(e, weights)
            engine.load_member_state(e, optim, meta["step"])
            if e and meta["step"] != start:
                raise GroklabError("runs of this group were saved at different steps; resume them separately")
            start = meta["step"]
            m.history = _load_history(m.run_dir / METRICS_FILE, start)
            _note_resume(m.run_dir, start)
            # evaluations after the checkpoint will be redone: drop them from the file now
            _write_history(m)
        log(f"resuming {E} run(s) from step {start:,}")
    else:
        _refuse_overwrite(members)
    path = engine.capture_cuda_graph() if tcfg.cuda_graph else "eager: --no-cuda_graph"
    path += " + torch.compile" if tcfg.compile else ""
    if not tcfg.resume:
        _prepare_dirs(members, argv, device, E, path)
    return OpenGroup(members, model, engine, eval_sets, start, path, log, on_steps)


def train_runs(configs: Sequence[RunConfig], argv: list[str] | None = None,
               log: Callable[[str], None] = print, datas: Sequence[RunData] | None = None,
               on_steps: Callable[[int], None] | None = None,
               on_eval: Callable[[int, list[list[dict]]], None] | None = None) -> list[dict]:
    """Train these runs as one group and return their summaries (also written to each run's summary.json);
    a run that went non-finite gets {"status": "failed", ...} instead (and failed.json), and the others go on.
    `datas`: each run's data, if the caller has already loaded it. `on_steps(n)`: called as steps are taken,
    instead of the progress bar and the printed evaluation lines (which then go to `log`): a sweep's hook.
    `on_eval(step, histories)`: called after every evaluation; histories[i] is the i-th run's metric rows so
    far (as in its metrics.jsonl), enough to redraw a live curve in a notebook."""
    return train_group(open_group(configs, argv, log, datas, on_steps), on_eval)


def train_group(g: OpenGroup, on_eval: Callable[[int, list[list[dict]]], None] | None = None) -> list[dict]:
    """The training loop of an opened group, on the current CUDA stream; summaries as `train_runs`."""
    members, model, engine, eval_sets, start, log, on_steps = (g.members, g.model, g.engine, g.eval_sets, g.start,
                                                              g.log, g.on_steps)
    configs = [m.cfg for m in members]
    tcfg = configs[0].train
    device = model.device
    E = len(members)
    tb = TensorBoard.open(members, start)  # --tensorboard: None unless a run asked for it
    wb = WandB.open(members, start, log)  # --wandb: likewise

    if E == 1:
        log("config: " + json.dumps(configs[0].to_dict(), sort_keys=True))
    log(f"{E} run(s) · {model.numel:,} parameters each · vocab {model.vocab_size} · context {model.cfg.block_size} · "
        f"{len(members[0].data.splits['train']):,} train examples · device {device} · step: {g.path}")

    snapshots = set(eval_steps(tcfg.max_steps, tcfg.snapshots_per_decade)) if tcfg.snapshots_per_decade else set()
    schedule = sorted(s for s in set(eval_steps(tcfg.max_steps, tcfg.eval_points_per_decade, tcfg.eval_interval))
                      | snapshots if s > start)
    from tqdm.auto import tqdm  # a widget in Jupyter, a text bar in a terminal

    bar = tqdm(total=tcfg.max_steps, initial=start, unit="step", dynamic_ncols=True,
               disable=None if tcfg.progress and on_steps is None else True, file=sys.stderr)
    say = log if on_steps is not None else None
    t0 = time.time() - (members[0].history[-1]["elapsed_s"] if members[0].history else 0.0)
    step = start
    try:
        for target in schedule:
            before = step
            while step < target:
                loss = engine.step()
                step += 1
                bar.update(1)
                if tcfg.log_interval and step % tcfg.log_interval == 0:
                    log(f"step {step}: batch loss " + " ".join(f"{v:.4f}" for v in loss.tolist()))  # host sync
                if step % tcfg.checkpoint_interval == 0 and step != target:
                    _save_checkpoint(members, model, engine, step)
            if on_steps is not None:
                on_steps(step - before)
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
                        ckpt.save_snapshot(m.run_dir, model.member_state(e), step)  # host sync
            if all(m.failed for m in members):
                break
            done = _confirmed_grokked(members, tcfg.early_stop_evals, tcfg.grok_threshold)
            if step % tcfg.checkpoint_interval == 0 or step == tcfg.max_steps or done:
                _save_checkpoint(members, model, engine, step)
            if done:
                log(f"stopping at step {step:,}: val accuracy has stayed ≥ {tcfg.grok_threshold} for "
                    f"{tcfg.early_stop_evals} evaluations" + (" in every run" if E > 1 else ""))
                break
    except KeyboardInterrupt:
        bar.close()
        if wb is not None:
            wb.close(None)
        _save_checkpoint(members, model, engine, step)
        raise GroklabError(f"interrupted at step {step:,}; state saved, continue with the same command and --resume")
    bar.close()
    if tb is not None:
        tb.close()
    if on_steps is not None and step < tcfg.max_steps:
        on_steps(tcfg.max_steps - step)  # an early stop finishes the run's share of the work
    results = [m.failed if m.failed else _finish(m, device, time.time() - t0, log) for m in members]
    if wb is not None:
        wb.close(results)
    return results


def _note_resume(run_dir: Path, step: int) -> None:
    """meta.json keeps when and where a run was resumed (a sweep resumes runs on other hosts)."""
    meta_path = run_dir / "meta.json"
    meta = ckpt.read_json(meta_path) if meta_path.exists() else {}
    meta.setdefault("resumes", []).append({"step": step, "host": platform.node(), "pid": os.getpid(),
                                           "at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    write_json(meta_path, meta)


def _confirmed_grokked(members: Sequence[Member], k: int, threshold: float) -> bool:
    """Early stop: every (healthy) run's last k evaluations all have val accuracy >= threshold."""
    if k <= 0:
        return False
    return all(len(m.history) >= k and all(h["val_acc"] >= threshold for h in m.history[-k:])
               for m in members if not m.failed)


def record_failure(run_dir: str | Path, reason: str, step: int | None = None) -> dict:
    """failed.json in the run's folder: why and when it stopped (a sweep reports it and does not retry it)."""
    failure = {"status": "failed", "run_dir": str(run_dir), "step": step, "reason": reason}
    write_json(Path(run_dir) / FAILED_FILE, failure)
    return failure


def _evaluate_all(members: Sequence[Member], model: GPT, eval_sets: dict, step: int, elapsed: float, bar,
                  log: Callable[[str], None] | None) -> None:
    """Evaluate every run; a run whose weights or losses are no longer finite is marked failed here."""
    results = {split: evaluate(model, stacked) for split, stacked in eval_sets.items()}
    results = {s: (loss.tolist(), acc.tolist()) for s, (loss, acc) in results.items()}  # host sync
    finite_weights = torch.isfinite(model.flat).all(dim=1).tolist()  # host sync
    for e, m in enumerate(members):
        if m.failed:
            continue
        row = {"step": step, "elapsed_s": round(elapsed, 3)}
        for split in SPLITS:
            has = split in results and len(m.data.scored[split]) > 0
            row[f"{split}_loss"] = results[split][0][e] if has else None
            row[f"{split}_acc"] = results[split][1][e] if has else None
        bad = [k for k, v in row.items() if k.endswith("_loss") and v is not None and not math.isfinite(v)]
        if bad or not finite_weights[e]:
            what = "weights" if not finite_weights[e] else bad[0].replace("_", " ")
            m.failed = record_failure(m.run_dir, f"non-finite {what} at step {step:,}", step)
            _emit(f"{m.run_dir}: {m.failed['reason']}; the run is stopped, the others go on", bar, log)
            continue
        m.history.append(row)
        _write_history(m)
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


def _finish(m: Member, device: torch.device, wall: float, log: Callable[[str], None]) -> dict:
    summary = grokking_summary(m.history, m.cfg.train.grok_threshold)
    summary.update({"status": "done", "run_dir": str(m.run_dir), "steps": m.history[-1]["step"] if m.history else 0,
                    "wall_time_s": round(wall, 2), "device": str(device)})
    write_json(m.run_dir / SUMMARY_FILE, summary)
    if m.cfg.train.plot and m.history:
        d = m.cfg.data
        what = d.text_file or d.data_dir or f"{d.operators} mod {d.prime}"
        title = (f"{what} · {m.cfg.model.n_layer} layer(s), d={m.cfg.model.n_embd} · batch {m.cfg.train.batch_size}"
                 f" · lr {m.cfg.optim.learning_rate:g} · wd {m.cfg.optim.weight_decay:g} · seed {m.cfg.train.seed}")
        plot_curves(m.history, m.run_dir / CURVES_FILE, title,
                    {"memorised": summary["steps_to_memorise"], "grokked": summary["steps_to_grok"]})
    return summary
