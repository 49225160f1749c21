"""What a training run says while it trains: a short header (the settings that define it; its config.json
holds every one), evaluation lines, and messages written around the progress bar so that they never tear
it. How much is said is the run's `verbosity` (quiet, normal, verbose); a caller that passes no `log`
hears nothing (the Python API prints nothing unless asked)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from groklab.config import RunConfig, field_roles, flat_fields
from groklab.data.dataset import RunData
from groklab.data.ops import resolve_ops
from groklab.errors import GroklabError

RANK = {"quiet": 0, "normal": 1, "verbose": 2}


class Console:
    """Lines of one group, to `log`, at or below the run's verbosity; while a progress bar is on screen a
    line is written with the bar cleared and redrawn after it (tqdm's external write mode)."""

    def __init__(self, log: Callable[[str], None] | None, verbosity: str = "normal"):
        self.log, self.verbosity, self.bar = log, verbosity, None

    def shows(self, level: str) -> bool:
        return self.log is not None and RANK[self.verbosity] >= RANK[level]

    def say(self, line: str, level: str = "normal") -> None:
        """level: the least verbosity that shows the line ('quiet' for failures: always shown)."""
        if not self.shows(level):
            return
        assert self.log is not None
        if self.bar_on:
            with self.bar.external_write_mode(file=sys.stdout):
                self.log(line)
        else:
            self.log(line)

    @property
    def bar_on(self) -> bool:
        return self.bar is not None and not self.bar.disable


def _varying(configs: Sequence[RunConfig]) -> dict[str, list[Any]]:
    """The fields (of what a run is) whose values differ between the runs of a group, with their values."""
    roles = field_roles()
    flats = [flat_fields(c) for c in configs]
    out: dict[str, list[Any]] = {}
    for name in flats[0]:
        if roles[name] == "how":
            continue
        values: list[Any] = []
        for f in flats:
            if f[name] not in values:
                values.append(f[name])
        if len(values) > 1:
            out[name] = values
    return out


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _data(cfg: RunConfig, data: RunData, varies: dict[str, list[Any]]) -> str:
    d = cfg.data
    if d.text_file is not None:
        what = f"the text {d.text_file} to memorise"
    elif d.operators is not None:
        try:
            names = " and ".join(op.title.lower() for op in resolve_ops(d.operators))
        except GroklabError:
            names = d.operators
        what = f"{names} ({d.operators}) mod {'varies' if 'prime' in varies else d.prime}"
    else:
        what = str(d.data_dir)
    sizes = ", ".join(f"{len(x):,} {s}" for s, x in data.splits.items() if len(x))
    split = "split sizes differ between the runs" if {"train_fraction", "val_fraction", "num_samples",
                                                      "data_seed"} & set(varies) else f"{sizes} examples"
    return f"{what} · {d.tokenizer} tokens · {split}"


def header(configs: Sequence[RunConfig], datas: Sequence[RunData], numel: int, vocab: int, context: int,
           device: str, path: str) -> list[str]:
    """The handful of settings that define the group's runs, in five short lines; what differs between the
    runs of a group on a line of its own."""
    cfg, varies = configs[0], _varying(configs)
    m, o, t = cfg.model, cfg.optim, cfg.train

    def v(name: str, text: str) -> str:
        return f"{name.split('_')[0]} varies" if name in varies else text

    dirs = [c.train.out_dir for c in configs]
    where = dirs[0] if len(dirs) == 1 else (
        f"{len(dirs)} runs as one group: " + (", ".join(dirs) if len(dirs) <= 3 else f"{dirs[0]}, ... {dirs[-1]}"))
    optimizer = "Adam + L2 decay" if o.weight_decay_mode == "l2" else "AdamW"
    budget = f"up to {t.max_steps:,} steps" + (f", stop {t.early_stop_evals} evaluations after grokking"
                                               if t.early_stop_evals else "")
    batch = "full batch" if t.batch_size == 0 else f"batch {t.batch_size}"
    extra = f" · Grokfast {o.grokfast}" if o.grokfast != "none" else ""
    lines = [f"training {where} (config.json has every setting)",
             f"  data    {_data(cfg, datas[0], varies)}",
             f"  model   {m.n_layer} layer{'s' if m.n_layer != 1 else ''}, d {m.n_embd}, {m.n_head} heads"
             f" · {numel:,} parameters · vocab {vocab} · context {context}",
             f"  optim   {optimizer} {v('learning_rate', f'lr {o.learning_rate:g}')}, "
             f"{v('weight_decay', f'wd {o.weight_decay:g}')}, betas {o.beta1:g}/{o.beta2:g}{extra}"
             f" · {v('batch_size', batch)} · {budget} · {v('seed', f'seed {t.seed}')}",
             f"  device  {device} · step: {path}"]
    if varies:
        lines.append("  runs    differ in " + "; ".join(
            f"{k} ({', '.join(map(_fmt, vals[:6]))}{', ...' if len(vals) > 6 else ''})" for k, vals in varies.items()))
    return lines


def config_lines(cfg: RunConfig) -> list[str]:
    """--verbose: the whole resolved config, a section a line."""
    return [f"  {section}: {json.dumps(values, sort_keys=True)}" for section, values in cfg.to_dict().items()]


def eval_line(step: int, rows: Sequence[dict]) -> str:
    """One evaluation: a run's losses and accuracies, or a group's mean and range of accuracy."""
    if len(rows) == 1:
        r = rows[0]
        test = "" if r["test_acc"] is None else f" | test loss {r['test_loss']:.4f} acc {r['test_acc']:.4f}"
        return (f"step {step:,}: train loss {r['train_loss']:.4f} acc {r['train_acc']:.4f} | "
                f"val loss {r['val_loss']:.4f} acc {r['val_acc']:.4f}{test}")
    val = [r["val_acc"] for r in rows]
    train = [r["train_acc"] for r in rows]
    return (f"step {step:,}: train acc mean {sum(train) / len(train):.3f} | val acc mean {sum(val) / len(val):.3f}"
            f" min {min(val):.3f} max {max(val):.3f} ({len(rows)} runs)")


def batch_line(step: int, losses: Sequence[float], last: Sequence[dict]) -> str:
    """--log_interval: the batch loss of each run at this step, and the last evaluation's accuracies."""
    line = f"step {step:,}: batch loss " + " ".join(f"{v:.4f}" for v in losses)
    if last:
        train = sum(r["train_acc"] for r in last) / len(last)
        val = sum(r["val_acc"] for r in last) / len(last)
        mean = " (mean)" if len(last) > 1 else ""
        line += f" · at step {last[0]['step']:,}{mean}: train acc {train:.4f}, val acc {val:.4f}"
    return line
