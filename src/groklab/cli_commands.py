"""What each `groklab` command does once its flags are parsed: call one function, print its result."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from groklab import cli_options as opt
from groklab.cli_args import config_from_args, given_fields, options_from_args
from groklab.config import RunConfig
from groklab.errors import GroklabError
from groklab.extras import check_run_options
from groklab.presets import main_job_config


def check_out_path(path: str | Path | None, flag: str) -> None:
    """An output path, or a folder above it, that is a symbolic link to nothing or to itself (a loop) is refused
    naming it, before anything is written (mkdir said `[Errno 17] File exists`, resolve raised RuntimeError)."""
    for p in (Path(path), *Path(path).parents) if path is not None else ():
        if p.is_symlink() and not p.exists():
            try:
                p.resolve()
            except RuntimeError:
                raise GroklabError(f"{flag} {path}: {p} is a symbolic link that points to itself (a loop); "
                                   "remove it or choose another folder") from None
            raise GroklabError(f"{flag} {path}: {p} is a dangling symbolic link (to {os.readlink(p)}, which does "
                               "not exist); remove it, create its target, or choose another folder")


def data_cmd(args: argparse.Namespace) -> int:
    from groklab.data import equations as data

    o = options_from_args(args, opt.DataOptions)
    check_out_path(o.out, "--out")
    if o.text is not None:  # a text to memorise (seed 000's data/sanity_check): groklab.data.textset
        from groklab.data.textset import text_data_command

        print(text_data_command(o.text, o.out, o.op, o.p, o.num_samples, o.fractions))
        return 0
    if o.op is None or o.p is None:
        raise GroklabError("give --op OPS and --p P (or --text TEXT for a text to memorise)")
    spec = data.DatasetSpec(ops=o.op, p=o.p, num_samples=o.num_samples, fractions=o.fraction_values(), seed=o.seed)
    splits = data.make_splits(spec)
    manifest = data.write_dataset(spec, splits, o.out)
    print(data.stats_table([manifest]))
    if any(op.domain == "perm" for op in spec.operations):
        from groklab.data.ops import permutation

        last = o.p - 1
        print(f"\npermutations are numbered by the lexicographic rank of their one-line notation: 0 = "
              f"{''.join(map(str, permutation(0, o.p)))} (the identity), 1 = {''.join(map(str, permutation(1, o.p)))}"
              f", ..., {last} = {''.join(map(str, permutation(last, o.p)))}; x∘y applies y first")
    print(f"\nwrote {o.out}/train.txt, val.txt, test.txt and manifest.json "
          f"(content hash {manifest['content_hash'][:12]})")
    return 0


def _positional_source(path: str | None, cfg: RunConfig) -> RunConfig:
    """`groklab train textfile.txt` (seed 003), `groklab train DATA_DIR`, a text folder, or seed 003's
    `groklab train . --operators / --prime 97`: groklab.data.source."""
    from groklab.data.source import positional_source

    cfg, note = positional_source(path, cfg)
    if note is not None:
        print(note, file=sys.stderr)
    return cfg


def result_line(s: dict, plot: bool) -> str:
    """What a finished (or already finished) run says at the end."""
    if s.get("status") == "failed":
        from groklab.store.rundir import retry_hint

        hint = "" if s.get("already") is None else retry_hint(s["run_dir"])
        return f"{s['run_dir']}: failed: {s['reason']}{hint}"
    grok = s["steps_to_grok"]
    final = s["final"]
    if s.get("task") == "text":  # no held-out data: no grokking verdict (groklab.training.textrun)
        from groklab.training.textrun import describe

        status = describe(s)
    else:
        status = (f"grokked at step {grok:,} (val acc ≥ {s['threshold']} from then on)" if grok is not None
                  else f"did not grok (val acc never stayed ≥ {s['threshold']})")
        status += f" · final train acc {final['train_acc']:.4f}, val acc {final['val_acc']:.4f}"
    line = f"{s['run_dir']}: {status} · {s['steps']:,} steps in {s['wall_time_s']:.0f} s"
    if plot and (Path(s["run_dir"]) / "curves.png").exists():
        line += f" · curves: {Path(s['run_dir']) / 'curves.png'}"
    if s.get("already"):
        line += " · already finished: nothing trained (another --out_dir starts a new run)"
    return line


def check_can_log(trains: Sequence[object]) -> None:
    """--wandb online needs a W&B login: checked before anything is written (training.wandb_log)."""
    if any(getattr(t, "wandb", False) for t in trains):
        from groklab.training.wandb_log import check_can_log as check

        check(trains)


def draw_missing_curves(s: dict, plot: bool) -> None:
    """A run stopped (a second Ctrl-C) while its curves were drawn is finished (its summary is written first),
    and the interrupt said to run the same command: that command draws the missing curves.png from the run's
    metrics instead of saying only 'already finished'."""
    from groklab.store import rundir
    from groklab.training.loop import draw_curves

    run_dir = Path(s["run_dir"])
    if not (plot and s.get("already") and s.get("status") == "done") or (run_dir / rundir.CURVES_FILE).exists():
        return
    history = rundir.read_metrics(run_dir)
    if history:
        draw_curves(history, run_dir, rundir.read_config(run_dir).cfg, s, text=s.get("task") == "text")


def base_config(command: str) -> RunConfig:
    """What the config flags of `train` (RunConfig's defaults) and of `run` (the main job) override."""
    return RunConfig() if command == "train" else main_job_config()


def train_cmd(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """`groklab train` and `groklab run`."""
    from groklab.store.sweepdir import claim_seeds_folder
    from groklab.training.groups import train_many
    from groklab.training.interrupts import decide_result

    o = options_from_args(args, opt.TrainOptions if args.command == "train" else opt.RunOptions)
    cfg = _positional_source(getattr(o, "path", None), config_from_args(args, base_config(args.command)))
    if not cfg.data.has_source:
        raise GroklabError("no data: give --data_dir DIR, a text file, or --operators OPS --prime P")
    check_run_options([cfg.train])  # before anything is written (--seeds changes only seed and out_dir)
    check_can_log([cfg.train])
    check_out_path(cfg.train.out_dir, "--out_dir")
    command = ["groklab", *argv]
    configs = [cfg]
    seeds_folder = None
    if o.seeds:
        out = Path(cfg.train.out_dir)
        configs = [cfg.replace(seed=s, out_dir=str(out / f"seed{s}")) for s in o.seed_list()]
        seeds_folder = claim_seeds_folder(out, configs, command)
    try:
        summaries = train_many(configs, argv=command, log=None if cfg.train.verbosity == "quiet" else print)
    finally:
        if seeds_folder is not None:
            seeds_folder.close()
    for s in summaries:
        draw_missing_curves(s, cfg.train.plot)  # a stop here is still one: the curves are the same command's work
    decide_result()
    for s in summaries:
        print(result_line(s, cfg.train.plot), file=sys.stderr if s.get("status") == "failed" else sys.stdout)
    return 1 if any(s.get("status") == "failed" for s in summaries) else 0


def sample_cmd(args: argparse.Namespace) -> int:
    import torch

    from groklab.analysis.sample import complete, interactive, prompts_from
    from groklab.store.loadrun import load_run
    from groklab.engine.device import resolve_device

    o = options_from_args(args, opt.SampleOptions)
    run = load_run(o.run or o.checkpoint, resolve_device(o.device))
    gen = torch.Generator().manual_seed(o.seed)
    equations = run.cfg.data.text_file is None  # an equation ends at its newline token
    if o.interactive:
        interactive(run, o.max_new_tokens, o.temperature, o.k, gen, equations=equations)
        return 0
    prompts = prompts_from(o.prompts or []) + ([o.prompt] if o.prompt is not None else [])
    if not prompts:
        raise GroklabError("give --prompts \"30/74=\" (or --prompt TEXT, or --interactive)")
    for prompt in prompts:
        print(complete(run, prompt, o.max_new_tokens, o.temperature, o.k, gen, equations).rstrip("\n"))
    return 0


def evaluate_cmd(args: argparse.Namespace) -> int:
    from groklab.analysis.sample import evaluate_split
    from groklab.store.loadrun import load_run
    from groklab.engine.device import resolve_device

    o = options_from_args(args, opt.EvaluateOptions)
    run = load_run(o.run, resolve_device(o.device))
    for split in o.split.split(","):
        r = evaluate_split(run, split.strip())
        print(json.dumps(r) if o.json else
              f"{r['run_dir']} (step {r['step']:,}) {r['split']}: exact-match accuracy {r['accuracy']:.4f} "
              f"(per token {r['token_accuracy']:.4f}) on {r['examples']:,} examples, loss {r['loss']:.4f}")
    return 0


def sweep_cmd(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from groklab.experiments.spec import load_spec
    from groklab.experiments.sweep import run_sweep
    from groklab.training.interrupts import decide_result

    o = options_from_args(args, opt.SweepOptions)
    check_out_path(o.out, "--out")
    spec, overrides = load_spec(o.spec), given_fields(args)
    trains = [p.config.train for p in spec.expand(overrides, max_runs=o.max_runs)]
    check_run_options(trains)  # before anything is written
    check_can_log(trains)
    counts = run_sweep(spec, o.out, overrides, retry_failed=o.retry_failed, argv=["groklab", *argv],
                       **o.backend_args())
    decide_result()  # everything is written and said: nothing is left for a signal to stop
    return 0 if counts["failed"] == 0 else 1


def reproduce_cmd(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from groklab.training.interrupts import decide_result
    from groklab.workflows import reproduce

    o = options_from_args(args, opt.ReproduceOptions)
    check_out_path(o.out, "--out")
    check_run_options([args])  # the flags: the studies themselves ask for no extra
    check_can_log([args])
    counts = reproduce(o.study, o.out, quick=o.quick, overrides=given_fields(args), argv=["groklab", *argv],
                       **o.backend_args())
    decide_result()  # the tables and the report are written: nothing is left for a signal to stop
    return 0 if counts["failed"] == 0 else 1


def report_cmd(args: argparse.Namespace) -> int:
    from groklab.reporting.report import write_report

    o = options_from_args(args, opt.ReportOptions)
    page, _ = write_report(o.dir, echo=print)
    if o.open:
        import webbrowser

        webbrowser.open(page.resolve().as_uri())
    return 0


def analyze_cmd(args: argparse.Namespace) -> int:
    from groklab.analysis.analyze import analyze

    r = analyze(options_from_args(args, opt.AnalyzeOptions).run)
    print(f"{r['run_dir']}: {len(r['over_training'])} snapshot(s) analysed; the measures that apply:")
    for line in r["measures"]:
        print(f"  {line}")
    for b in r["bases"].values():
        print(f"  key frequencies over {b['describe']}: {', '.join(map(str, b['key_frequencies']))} "
              f"(of 1..{b['order'] // 2})")
    for row in r["over_training"]:
        extra = "".join(f" · {k.replace('_', ' ')} {v:.4f}" for k, v in row.items()
                        if k.endswith("loss") or k.startswith("key_frequency_share"))
        print(f"  step {row['step']:>7,}: weight norm {row['weight_norm']:.2f}{extra}")
    print("wrote " + ", ".join([str(Path(r["run_dir"]) / "analysis.json"), *r["plots"]]))
    return 0


def export_cmd(args: argparse.Namespace) -> int:
    from groklab.store.export import export_run
    from groklab.store.loadrun import load_run

    o = options_from_args(args, opt.ExportOptions)
    check_out_path(o.out, "--out")
    run = load_run(o.run)
    out = export_run(run, o.format, o.out, source=str(run.run_dir))
    loader = ("transformers.GPT2LMHeadModel.from_pretrained" if o.format == "hf"
              else "groklab.store.export.load_module")
    print(f"wrote {out} ({o.format}, step {run.step:,}): load it with {loader}({str(out)!r})")
    return 0
