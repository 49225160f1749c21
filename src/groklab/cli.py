"""The `groklab` command: data, train, run, sweep, reproduce, report, sample, evaluate, export.

Every user mistake ends as one line `groklab: error: ...` and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from groklab import __version__
from groklab.cli_args import add_config_flags, config_from_args, given_fields
from groklab.config import RunConfig
from groklab.errors import GroklabError
from groklab.extras import check_run_options
from groklab.presets import main_job_config
from groklab.experiments.spec import MAX_RUNS


def _data_cmd(args: argparse.Namespace) -> int:
    from groklab.data import equations as data

    if args.text is not None:  # a text to memorise (seed 000's data/sanity_check): groklab.data.textset
        from groklab.data.textset import text_data_command

        print(text_data_command(args.text, args.out, args.op, args.p, args.num_samples, args.fractions))
        return 0
    if args.op is None or args.p is None:
        raise GroklabError("give --op OPS and --p P (or --text TEXT for a text to memorise)")
    fractions = None
    if args.fractions is not None:
        try:
            fractions = tuple(float(x) for x in args.fractions.split(","))
        except ValueError:
            raise GroklabError(f"--fractions: expected three numbers like 0.7,0.15,0.15, got {args.fractions!r}")
        if len(fractions) != 3:
            raise GroklabError(f"--fractions: expected three numbers (train,val,test), got {len(fractions)}")
    spec = data.DatasetSpec(ops=args.op, p=args.p, num_samples=args.num_samples, fractions=fractions,
                            seed=args.seed)
    splits = data.make_splits(spec)
    manifest = data.write_dataset(spec, splits, args.out)
    print(data.stats_table([manifest]))
    if any(op.domain == "perm" for op in spec.operations):
        from groklab.data.ops import permutation

        last = args.p - 1
        print(f"\npermutations are numbered by the lexicographic rank of their one-line notation: 0 = "
              f"{''.join(map(str, permutation(0, args.p)))} (the identity), 1 = {''.join(map(str, permutation(1, args.p)))}"
              f", ..., {last} = {''.join(map(str, permutation(last, args.p)))}; x∘y applies y first")
    print(f"\nwrote {args.out}/train.txt, val.txt, test.txt and manifest.json "
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


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise GroklabError(f"--seeds: expected comma-separated integers, got {text!r}") from None
    if not seeds:
        raise GroklabError("--seeds: give at least one seed, e.g. --seeds 42,123,456")
    if len(set(seeds)) != len(seeds):
        raise GroklabError("--seeds: each seed once")
    return seeds


def _result_line(s: dict, plot: bool) -> str:
    """What a finished (or already finished) run says at the end."""
    if s.get("status") == "failed":
        hint = "" if s.get("already") is None else "; add --resume to train it again from its last finite checkpoint"
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


def _train_cmd(args: argparse.Namespace, base: RunConfig, argv: Sequence[str]) -> int:
    from groklab.training.groups import train_many
    from groklab.store.sweepdir import claim_seeds_folder

    cfg = _positional_source(getattr(args, "path", None), config_from_args(args, base))
    if not cfg.data.has_source:
        raise GroklabError("no data: give --data_dir DIR, a text file, or --operators OPS --prime P")
    check_run_options([cfg.train])  # before anything is written (--seeds changes only seed and out_dir)
    command = ["groklab", *argv]
    configs = [cfg]
    seeds_folder = None
    if args.seeds:
        out = Path(cfg.train.out_dir)
        configs = [cfg.replace(seed=s, out_dir=str(out / f"seed{s}")) for s in _seeds(args.seeds)]
        seeds_folder = claim_seeds_folder(out, configs, command)
    try:
        summaries = train_many(configs, argv=command)
    finally:
        if seeds_folder is not None:
            seeds_folder.close()
    for s in summaries:
        print(_result_line(s, cfg.train.plot), file=sys.stderr if s.get("status") == "failed" else sys.stdout)
    return 1 if any(s.get("status") == "failed" for s in summaries) else 0


def _sample_cmd(args: argparse.Namespace) -> int:
    import torch

    from groklab.training.device import resolve_device
    from groklab.analysis.sample import complete, interactive, prompts_from
    from groklab.store.loadrun import load_run

    if (args.run is None) == (args.checkpoint is None):  # seed 000's spelling: --checkpoint PATH
        raise GroklabError("give the run: a run directory (or a file in it), or --checkpoint PATH")
    run = load_run(args.run or args.checkpoint, resolve_device(args.device))
    if not -(2**63) <= args.seed < 2**64:
        raise GroklabError(f"--seed must fit in 64 bits, got {args.seed}")
    gen = torch.Generator().manual_seed(args.seed)
    top_k = args.top_k if args.top_k and args.top_k > 0 else None
    if args.temperature < 0:
        raise GroklabError(f"--temperature must be >= 0, got {args.temperature}")
    if args.max_new_tokens < 0:
        raise GroklabError(f"--max_new_tokens must be >= 0, got {args.max_new_tokens}")
    if args.interactive:
        interactive(run, args.max_new_tokens, args.temperature, top_k, gen)
        return 0
    prompts = prompts_from(args.prompts or []) + ([args.prompt] if args.prompt is not None else [])
    if not prompts:
        raise GroklabError("give --prompts \"30/74=\" (or --prompt TEXT, or --interactive)")
    equations = run.cfg.data.text_file is None  # an equation ends at its newline token
    for prompt in prompts:
        print(complete(run, prompt, args.max_new_tokens, args.temperature, top_k, gen, equations).rstrip("\n"))
    return 0


def _evaluate_cmd(args: argparse.Namespace) -> int:
    from groklab.training.device import resolve_device
    from groklab.analysis.sample import evaluate_split
    from groklab.store.loadrun import load_run

    run = load_run(args.run, resolve_device(args.device))
    for split in args.split.split(","):
        r = evaluate_split(run, split.strip())
        print(json.dumps(r) if args.json else
              f"{r['run_dir']} (step {r['step']:,}) {r['split']}: exact-match accuracy {r['accuracy']:.4f} "
              f"(per token {r['token_accuracy']:.4f}) on {r['examples']:,} examples, loss {r['loss']:.4f}")
    return 0


def _sweep_cmd(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from groklab.experiments.sweep import run_sweep
    from groklab.experiments.spec import load_spec

    spec = load_spec(args.spec)
    check_run_options(p.config.train for p in spec.expand(given_fields(args), max_runs=args.max_runs,
                                                          echo=lambda _: None))  # before anything is written
    counts = run_sweep(spec, args.out, given_fields(args), backend=args.backend, address=args.address,
                       gpus_per_group=args.gpus_per_group, retry_failed=args.retry_failed, max_group=args.max_group,
                       concurrent_groups=args.concurrent_groups, argv=["groklab", *argv], max_runs=args.max_runs)
    return 0 if counts["failed"] == 0 else 1


def _reproduce_cmd(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from groklab.workflows import reproduce

    check_run_options([args])  # the flags: the studies themselves ask for no extra
    counts = reproduce(args.study, args.out, quick=args.quick, overrides=given_fields(args), backend=args.backend,
                       address=args.address, gpus_per_group=args.gpus_per_group, max_group=args.max_group,
                       concurrent_groups=args.concurrent_groups, argv=["groklab", *argv], max_runs=args.max_runs)
    return 0 if counts["failed"] == 0 else 1


def _report_cmd(args: argparse.Namespace) -> int:
    from groklab.reporting.report import write_report

    page, _ = write_report(args.dir, echo=print)
    if args.open:
        import webbrowser

        webbrowser.open(page.resolve().as_uri())
    return 0


def _at_least(low: float, kind: type = int):
    """An argparse type: a number of `kind` >= low (a negative --max_group trained nothing and exited 0)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not value >= low:
            raise argparse.ArgumentTypeError(f"must be at least {low:g}, got {text}")
        return value

    return parse


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def _add_backend_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="local: engine groups one after another in this process (default); ray: groups as Ray "
                        "tasks, on this machine or a cluster (pip install 'groklab[ray]')")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--gpus_per_group", "--gpus-per-group", type=_positive, default=1.0,
                   help="Ray: the GPU share each group asks for, e.g. 0.25 packs four groups on a GPU (default 1)")
    p.add_argument("--max_group", "--max-group", type=_at_least(1), default=None,
                   help="at most this many runs in one engine group (default: as many as fit)")
    p.add_argument("--max_runs", "--max-runs", type=_at_least(1), default=MAX_RUNS,
                   help=f"refuse a spec that expands to more runs than this (default {MAX_RUNS:,})")
    p.add_argument("--concurrent_groups", "--concurrent-groups", type=_at_least(1), default=None,
                   help="local backend: engine groups trained at once, each in its own thread and CUDA stream "
                        "(default: 1 on a CPU; on a GPU up to 8, each captured before any trains)")


def _analyze_cmd(args: argparse.Namespace) -> int:
    from groklab.analysis.analyze import analyze

    r = analyze(args.run)
    print(f"{r['run_dir']}: {len(r['over_training'])} snapshot(s) analysed; the measures that apply:")
    for line in r["measures"]:
        print(f"  {line}")
    for name, b in r["bases"].items():
        print(f"  key frequencies over {b['describe']}: {', '.join(map(str, b['key_frequencies']))} "
              f"(of 1..{b['order'] // 2})")
    for row in r["over_training"]:
        extra = "".join(f" · {k.replace('_', ' ')} {v:.4f}" for k, v in row.items()
                        if k.endswith("loss") or k.startswith("key_frequency_share"))
        print(f"  step {row['step']:>7,}: weight norm {row['weight_norm']:.2f}{extra}")
    print("wrote " + ", ".join([str(Path(r["run_dir"]) / "analysis.json"), *r["plots"]]))
    return 0


def _export_cmd(args: argparse.Namespace) -> int:
    from groklab.store.export import export_run
    from groklab.store.loadrun import load_run

    run = load_run(args.run)
    out = export_run(run, args.format, args.out, source=str(run.run_dir))
    loader = ("transformers.GPT2LMHeadModel.from_pretrained" if args.format == "hf"
              else "groklab.store.export.load_module")
    print(f"wrote {out} ({args.format}, step {run.step:,}): load it with {loader}({str(out)!r})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="groklab", description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"groklab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("data", allow_abbrev=False, help="write train/val/test equation files and a manifest")
    d.add_argument("--op", "--ops", "--operators", dest="op", default=None,
                   help="operation(s): + - * / # @ & $ ! on Z_p, o %% : on permutations (p = n!, 120 for S5), or "
                        "names (add, sub, mul, div, perm, perm_conj, perm_aba, ...); '+,-' mixes")
    d.add_argument("--p", "--prime", dest="p", type=int, default=None, help="modulus p")
    d.add_argument("--text", default=None, help="a text to memorise instead of equations: writes text.txt and "
                   "manifest.json, which `train --data_dir` trains on (seed 000's data/sanity_check)")
    d.add_argument("--out", "--out_dir", "--out-dir", dest="out", required=True, help="output folder (new or empty)")
    d.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    d.add_argument("--num_samples", "--num-samples", type=int, default=None,
                   help="N distinct random equations instead of all pairs (default fractions 0.4,0.4,0.2)")
    d.add_argument("--fractions", default=None, help="train,val,test shares (default 0.7,0.15,0.15)")

    t = sub.add_parser("train", allow_abbrev=False, help="train a run (or --seeds: one run a seed, trained together)")
    t.add_argument("path", nargs="?", help="a text file to memorise (seed 003) or a data folder")
    t.add_argument("--seeds", default=None, help="train these model seeds as one group, e.g. 42,123,456; "
                   "run directories OUT_DIR/seed42, ...")
    add_config_flags(t, RunConfig())

    r = sub.add_parser("run", allow_abbrev=False, help="the main job: a grokking run on the CPU, with progress and curves")
    r.add_argument("--seeds", default=None, help=argparse.SUPPRESS)
    add_config_flags(r, main_job_config())

    w = sub.add_parser("sweep", allow_abbrev=False, help="train every run of a sweep spec (TOML); resumable")
    w.add_argument("spec", help="sweep spec: a TOML file with [base], [grid], [zip] or [[experiment]] tables")
    w.add_argument("--out", "--out_dir", "--out-dir", dest="out", required=True, help="sweep folder")
    w.add_argument("--retry_failed", "--retry-failed", action="store_true", help="train failed runs again")
    _add_backend_flags(w)
    add_config_flags(w, RunConfig(), skip=("out_dir", "resume"))

    rp = sub.add_parser("reproduce", allow_abbrev=False,
                        help="a seed report's or paper's whole study: its runs, its tables (seed-000, seed-003, nanda)")
    rp.add_argument("study", help="seed-000, seed-003 or nanda (Nanda et al. 2023: a+b mod 113, full batch)")
    rp.add_argument("--out", "--out_dir", "--out-dir", dest="out", default=None, help="sweep folder (default out/STUDY)")
    rp.add_argument("--quick", action="store_true", help="a short version for a CPU try (fewer steps)")
    _add_backend_flags(rp)
    add_config_flags(rp, RunConfig(), skip=("out_dir", "resume"))

    rr = sub.add_parser("report", allow_abbrev=False,
                        help="report.html (self-contained) and report.md of a run or a sweep: curves, tables, heatmaps")
    rr.add_argument("dir", help="a sweep folder (sweep.json) or a run folder (config.json)")
    rr.add_argument("--open", action="store_true", help="open report.html in the web browser")

    s = sub.add_parser("sample", allow_abbrev=False, help="generate from a trained run")
    s.add_argument("run", nargs="?", default=None, help="run directory (or a file inside it)")
    s.add_argument("--checkpoint", default=None, help="the same, seed 000's spelling (a file in the run directory)")
    s.add_argument("--prompts", nargs="*", default=None, help="prompts, e.g. \"30/74=\" (comma-separated or several)")
    s.add_argument("--prompt", default=None, help="one prompt (seed 003 spelling)")
    s.add_argument("--max_new_tokens", "--max-new-tokens", "--steps", dest="max_new_tokens", type=int, default=8,
                   help="tokens to generate (default 8)")
    s.add_argument("--temperature", type=float, default=1.0, help="softmax temperature; 0 = greedy (default 1.0)")
    s.add_argument("--top_k", "--top-k", dest="top_k", type=int, default=None, help="sample among the k likeliest")
    s.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    s.add_argument("--interactive", action="store_true", help="a prompt loop")
    s.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")

    an = sub.add_parser("analyze", allow_abbrev=False,
                        help="progress measures (Nanda et al.): weight norm; for + - (over Z_p) and * / (over "
                             "discrete logs) the embeddings' Fourier spectrum and restricted/excluded loss")
    an.add_argument("run", help="run directory (trained with --tokenizer number; --snapshots_per_decade or "
                                "--snapshot_interval for curves over training)")

    x = sub.add_parser("export", allow_abbrev=False,
                       help="a run for other tools: a Hugging Face GPT-2 folder or a plain torch module")
    x.add_argument("run", help="run directory (or a file inside it)")
    x.add_argument("--format", choices=["hf", "module"], default="hf",
                   help="hf: GPT2LMHeadModel + tokenizer, for transformers and TransformerLens "
                        "(pip install 'groklab[hf]'); module: a plain torch.nn.Module's weights (default hf)")
    x.add_argument("--out", "--out_dir", "--out-dir", dest="out", required=True,
                   help="output folder (new, empty, or an earlier export)")

    e = sub.add_parser("evaluate", allow_abbrev=False, help="exact-match accuracy of a run on one of its splits")
    e.add_argument("run", help="run directory (or a file inside it)")
    e.add_argument("--split", default="test", help="train, val or test (comma-separated for several)")
    e.add_argument("--json", action="store_true", help="print JSON lines")
    e.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    return parser


def _console_never_crashes() -> None:
    """A terminal whose locale cannot show '≥' or '·' gets an escape, not a crash after the work is done."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    import shlex
    import signal
    import threading

    from groklab.training.interrupts import Interrupted, StopNow, raise_stop_now

    argv = list(sys.argv[1:] if argv is None else argv)
    _console_never_crashes()
    parser = build_parser()
    args = parser.parse_args(argv)
    command = shlex.join(["groklab", *argv])
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, raise_stop_now)  # training loops install their own
    try:
        return _dispatch(args, argv)
    except GroklabError as exc:
        if isinstance(exc, Interrupted):
            print(f"groklab: {exc}; run the same command to resume: {command}", file=sys.stderr)
            return exc.exit_code
        print(f"groklab: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. an output folder that cannot be made: the system's words name the path
        print(f"groklab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("groklab: interrupted; what was saved is intact (files are replaced whole, the resume point "
              f"last); run the same command to go on: {command}", file=sys.stderr)
        return 130
    except StopNow as exc:
        print(f"groklab: stopped by {exc}; what was saved is intact; run the same command to go on: {command}",
              file=sys.stderr)
        return 128 + exc.signum
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _dispatch(args: argparse.Namespace, argv: list[str]) -> int:
    if args.command == "data":
        return _data_cmd(args)
    if args.command == "train":
        return _train_cmd(args, RunConfig(), argv)
    if args.command == "run":
        return _train_cmd(args, main_job_config(), argv)
    if args.command == "sweep":
        return _sweep_cmd(args, argv)
    if args.command == "reproduce":
        return _reproduce_cmd(args, argv)
    if args.command == "report":
        return _report_cmd(args)
    if args.command == "sample":
        return _sample_cmd(args)
    if args.command == "analyze":
        return _analyze_cmd(args)
    if args.command == "evaluate":
        return _evaluate_cmd(args)
    if args.command == "export":
        return _export_cmd(args)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
