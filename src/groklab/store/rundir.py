"""The run folder: what is in it describes exactly what was trained. This module owns it: every file name,
the decision to create, resume or refuse, the one lock, the readers (each checks the shape of what it reads),
the summary and the status. Its writer is `runfolder.RunFolder`; loading a trained run is `loadrun`'s.

    config.json        what the run is (the config, the command line, the data's content hash)
    meta.json          the marker that groklab made the folder; versions, device, host, every resume
    vocab.json         the vocabulary;  data/  the exact splits (or the text) it trained on
    metrics.jsonl      one line an evaluation, appended as they come (a kill can cut only the last line)
    model.safetensors  the weights (with their model config, vocabulary and a checksum)
    state.safetensors  what a resume needs; written last, so it is the run's commit point
    summary.json       a finished run's measures;  failed.json  a run that went non-finite or errored
    curves.png, snapshots/, tb/, wandb/, analysis*, report*   outputs

The rules: one writer (an OS lock that dies with its process); a folder groklab did not write is never
touched; a run resumed with any change to what it *is* (config fields of role "is", the data's content) is
refused naming the field; a checkpoint is only ever written from finite numbers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, Sequence

from groklab.store import checkpoint as ckpt
from groklab.config import ConfigError, ModelConfig, RunConfig, differences
from groklab.data.equations import TEXT_FILE, fingerprint
from groklab.errors import CheckpointError, GroklabError
from groklab.files import parse_json, read_json, require
from groklab.lock import entries

if TYPE_CHECKING:  # types only: the readers here must not load torch (see groklab.results)
    from groklab.data.dataset import RunData

CONFIG_FILE = "config.json"
META_FILE = "meta.json"
VOCAB_FILE = "vocab.json"
DATA_DIR = "data"
METRICS_FILE = "metrics.jsonl"
WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "state.safetensors"
SUMMARY_FILE = "summary.json"
FAILED_FILE = "failed.json"
CURVES_FILE = "curves.png"
SNAPSHOT_DIR = "snapshots"
TB_DIR = "tb"
WANDB_DIR = "wandb"  # --wandb: W&B's own files for the run (all of it in offline mode)
ANALYSIS_FILE = "analysis.json"
ANALYSIS_PLOTS = ("analysis_fourier.png", "analysis_progress.png", "analysis_phases.png")
REPORT_FILES = ("report.html", "report.md", "report_files")  # `groklab report` writes these into any folder
REPORT_MARKER = "<!-- written by groklab report -->"  # the last line of every report.md `groklab report` writes
RUN_FORMAT = "groklab-run/2"
# everything groklab may write into a run folder (a fresh start clears these and nothing else)
OWN_NAMES = (CONFIG_FILE, META_FILE, VOCAB_FILE, DATA_DIR, METRICS_FILE, WEIGHTS_FILE, STATE_FILE, SUMMARY_FILE,
             FAILED_FILE, CURVES_FILE, SNAPSHOT_DIR, TB_DIR, WANDB_DIR, ANALYSIS_FILE, *ANALYSIS_PLOTS,
             *REPORT_FILES)
Status = Literal["done", "failed", "partial", "pending"]
SPLITS = ("train", "val", "test")
METRIC_NUMBERS = tuple(f"{s}_{k}" for s in SPLITS for k in ("loss", "acc"))


# ---------------------------------------------------------------- what is there


def _shown(names: Sequence[str]) -> str:
    return ", ".join(names[:6]) + (f", ... ({len(names)} in all)" if len(names) > 6 else "")


def is_ours(run_dir: Path) -> bool:
    """Whether groklab made this folder as a run folder: its meta.json says so (groklab 0.1's had no format
    tag but always a version and a start time)."""
    try:
        meta = parse_json((run_dir / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError, UnicodeDecodeError):
        return False
    return isinstance(meta, dict) and (meta.get("format") == RUN_FORMAT
                                       or ("groklab_version" in meta and "started" in meta))


def refuse_foreign(folder: Path, what: str = "--out_dir") -> None:
    """A folder that holds something groklab did not write is never written into."""
    if folder.exists() and not folder.is_dir():
        raise GroklabError(f"{folder}: is a file; {what} must name a folder")
    present = entries(folder)
    if present and not is_ours(folder):
        raise GroklabError(f"{folder} already holds files groklab did not write ({_shown(present)}); choose "
                           f"another {what} or an empty folder")


def status(run_dir: str | Path) -> Status:
    run_dir = Path(run_dir)
    if (run_dir / SUMMARY_FILE).is_file():
        return "done"
    if (run_dir / FAILED_FILE).is_file():
        return "failed"
    if (run_dir / STATE_FILE).is_file():
        return "partial"
    return "pending"


def saved_step(run_dir: str | Path) -> int | None:
    """The step of a run's resumable state, from the state file's header alone; None if there is none."""
    meta = ckpt.read_meta(Path(run_dir) / STATE_FILE)
    return None if meta is None else _step(meta.get("step"), Path(run_dir) / STATE_FILE)


def retry_hint(run_dir: str | Path) -> str:
    """What --resume does to a failed run, said where the failure is shown: it resumes from the last finite
    checkpoint, or starts afresh when the run went non-finite before its first one."""
    step = saved_step(run_dir)
    if step is None:
        return "; it has no finite checkpoint: add --resume to train it again from the start"
    return f"; add --resume to train it again from its last finite checkpoint (step {step:,})"


def _step(value: Any, path: Path) -> int:
    require(isinstance(value, int) and not isinstance(value, bool) and value >= 0, path, CheckpointError,
            "no valid step recorded")
    return value


# ---------------------------------------------------------------- readers (validated by shape)

@dataclass(frozen=True)
class SavedConfig:
    cfg: RunConfig
    argv: list[str] | None
    data_hash: str | None  # None in folders written by groklab 0.1: computed from data/ instead


def read_config(run_dir: Path) -> SavedConfig:
    path = run_dir / CONFIG_FILE
    d = read_json(path, CheckpointError, "a run config")
    require(isinstance(d, dict) and isinstance(d.get("config"), dict), path, CheckpointError,
            "expected an object with a \"config\" object")
    argv = d.get("argv")
    require(argv is None or (isinstance(argv, list) and all(isinstance(a, str) for a in argv)), path,
            CheckpointError, "\"argv\" must be a list of strings")
    require(all(isinstance(v, dict) for v in d["config"].values()), path, CheckpointError,
            "each config section must be an object")
    try:
        cfg = RunConfig.from_dict(d["config"])
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"{path}: not a groklab run config ({exc})") from None
    data_hash = d.get("data_hash")
    require(data_hash is None or isinstance(data_hash, str), path, CheckpointError, "\"data_hash\" must be a string")
    return SavedConfig(cfg, argv, data_hash)


def read_meta(run_dir: Path) -> dict[str, Any]:
    """meta.json, or {} when there is none (a run killed before writing it)."""
    path = run_dir / META_FILE
    if not path.exists():
        return {}
    meta = read_json(path, CheckpointError, "a run's meta.json")
    require(isinstance(meta, dict), path, CheckpointError, "expected a JSON object")
    require(isinstance(meta.get("resumes", []), list) and all(isinstance(r, dict) for r in meta.get("resumes", [])),
            path, CheckpointError, "\"resumes\" must be a list of objects")
    return meta


def _number_or_none(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def read_summary(run_dir: Path) -> dict[str, Any]:
    path = run_dir / SUMMARY_FILE
    s = read_json(path, CheckpointError, "a run summary")
    require(isinstance(s, dict) and isinstance(s.get("final", {}), dict), path, CheckpointError,
            "expected an object with a \"final\" object")
    for k in ("steps_to_memorise", "steps_to_grok", "grokking_delay", "grokking_ratio", "best_val_acc", "steps",
              "wall_time_s", "threshold", "steps_to_memorise_first", "steps_to_grok_first", "steps_to_memorise_held",
              "steps_to_grok_held"):  # the last four: absent (None) in summaries from before them
        require(_number_or_none(s.get(k)), path, CheckpointError, f"{k!r} must be a number or null")
    final = s.get("final", {})
    for k in METRIC_NUMBERS:
        require(_number_or_none(final.get(k)), path, CheckpointError, f"final {k!r} must be a number or null")
    return s


def read_failure(run_dir: Path) -> dict[str, Any]:
    path = run_dir / FAILED_FILE
    f = read_json(path, CheckpointError, "a run's failed.json")
    require(isinstance(f, dict) and isinstance(f.get("reason", ""), str) and _number_or_none(f.get("step")), path,
            CheckpointError, "expected an object with a text \"reason\" and a \"step\"")
    return f


def read_metrics(run_dir: Path, upto: int | None = None) -> list[dict[str, Any]]:
    """The evaluations of a run, in step order, each checked; rows after `upto` left out. A last line without
    its newline is what a kill mid-append leaves: it is dropped (that evaluation is redone on resume). Any
    other bad line is an error naming file:line."""
    path = run_dir / METRICS_FILE
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        lines.pop()  # torn by a kill
    rows: list[dict[str, Any]] = []
    for n, line in enumerate(lines, 1):
        try:
            row = parse_json(line.decode("utf-8"))
            ok = (isinstance(row, dict) and isinstance(row.get("step"), int) and not isinstance(row["step"], bool)
                  and row["step"] >= 0 and (not rows or row["step"] > rows[-1]["step"])
                  and _number_or_none(row.get("elapsed_s")) and all(_number_or_none(row.get(k)) for k in METRIC_NUMBERS))
        except (UnicodeDecodeError, ValueError, RecursionError):
            ok = False
        if not ok:
            raise CheckpointError(f"{path}:{n}: not a metrics line written by groklab; it was not loaded (a run's "
                                  "grokking measures come from every evaluation: restore the file, or train it "
                                  "afresh in another --out_dir)")
        if upto is None or row["step"] <= upto:
            rows.append(row)
    return rows


def require_evaluations(run_dir: Path, step: int, expected: Iterable[int]) -> None:
    """A resume from the checkpoint at `step` keeps the evaluations up to it, and the grokking measures and the
    early stop are computed from them: metrics.jsonl must hold every one of `expected` (the schedule's steps up
    to `step`; the loop writes an evaluation before the checkpoint of its step, so the one at `step` is there
    too when it is on the schedule)."""
    have = {row["step"] for row in read_metrics(run_dir, upto=step)}
    missing = [s for s in expected if s not in have]
    if missing:
        shown = ", ".join(f"{s:,}" for s in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise CheckpointError(f"{run_dir / METRICS_FILE}: lacks {len(missing)} evaluation(s) made up to the checkpoint "
                              f"at step {step:,} (steps {shown}), so a resume would report wrong grokking measures; "
                              "put the complete file back, or use another --out_dir to train afresh")


def stored_data_hash(run_dir: Path) -> str:
    """The content hash of the data a run trained on, from its own copy in data/."""
    folder = run_dir / DATA_DIR
    names = [TEXT_FILE] if (folder / TEXT_FILE).is_file() else [f"{s}.txt" for s in SPLITS]
    files = {}
    for name in names:
        if (folder / name).is_file():
            files[name] = (folder / name).read_bytes().decode("utf-8", errors="replace")
    return fingerprint(files)


def trained_data_hash(run_dir: Path, saved: SavedConfig) -> str:
    """The content hash of the data the run in `run_dir` (its config.json read as `saved`) trained on: as
    config.json recorded it, or from its copy in data/ (folders of groklab 0.1 recorded none)."""
    return saved.data_hash or stored_data_hash(run_dir)


def stored_data_config(cfg: RunConfig, run_dir: Path) -> RunConfig:
    """The same run config, its data read back from the copy inside the run folder."""
    folder = run_dir / DATA_DIR
    if (folder / TEXT_FILE).exists():
        return cfg.replace(data_dir=None, operators=None, prime=None, text_file=str(folder / TEXT_FILE))
    return cfg.replace(data_dir=str(folder), operators=None, prime=None, text_file=None, num_samples=None,
                       train_fraction=None, val_fraction=None)


def snapshots(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, file) of the weight snapshots a run kept, in step order."""
    out = []
    for p in sorted((run_dir / SNAPSHOT_DIR).glob("step_*.safetensors")):
        digits = p.stem[len("step_"):]
        if digits.isdigit():
            out.append((int(digits), p))
    return sorted(out)


def analysis_outputs(run_dir: Path) -> tuple[Path, list[Path]]:
    return run_dir / ANALYSIS_FILE, [run_dir / name for name in ANALYSIS_PLOTS]


def report_md_is_ours(raw: bytes) -> bool:
    """report.md's bytes are `groklab report`'s: its marker ends them (groklab 0.1's had its title first)."""
    return REPORT_MARKER in raw.decode("utf-8", "replace")[-200:] or b"groklab report" in raw[:200]


def report_html_is_ours(raw: bytes) -> bool:
    return b"groklab report" in raw[:2000]


def written_report(folder: Path) -> list[str]:
    """Which of report.md, report.html and report_files/ in `folder` `groklab report` wrote, told as it tells
    them before replacing its own (its marker, the last line of report.md; its title; figures only): a user's
    files of those names are not groklab's to delete."""
    md, page, figures = (folder / name for name in REPORT_FILES)
    ours = []
    if md.is_file() and not md.is_symlink() and report_md_is_ours(md.read_bytes()):
        ours.append(md.name)
    if page.is_file() and not page.is_symlink() and report_html_is_ours(page.read_bytes()):
        ours.append(page.name)
    if figures.is_dir() and not figures.is_symlink():
        inside = list(figures.iterdir())
        if all(p.is_file() and not p.is_symlink() and p.name.endswith(".png") for p in inside) and \
                (not inside or md.name in ours):
            ours.append(figures.name)
    return ours


def stale_outputs(run_dir: Path) -> list[str]:
    """The outputs in a run folder computed from its weights and evaluations so far (analysis, curves, a
    report groklab wrote): a resume trains on from them, so they would describe a run that no longer is."""
    names = [ANALYSIS_FILE, *ANALYSIS_PLOTS, CURVES_FILE]
    return [n for n in names if (run_dir / n).exists() or (run_dir / n).is_symlink()] + written_report(run_dir)


# ---------------------------------------------------------------- create, resume or refuse

@dataclass(frozen=True)
class Plan:
    """What training this config in its folder means now."""

    kind: Literal["fresh", "resume", "done", "failed"]
    step: int = 0  # where training starts (resume)
    failure: dict[str, Any] | None = None  # a failed run's failed.json (kind "failed")


def plan(cfg: RunConfig, data: RunData, retry_failed: bool = False) -> Plan:
    """Read-only: what the run folder holds for this config. A folder that is not ours, or a run whose
    config or data differ in what the run *is*, raises GroklabError naming the difference.
    `retry_failed` (or --resume): a failed run resumes from its last finite checkpoint."""
    run_dir = Path(cfg.train.out_dir)
    refuse_foreign(run_dir)
    resume_asked = cfg.train.resume
    if not (run_dir / CONFIG_FILE).is_file():
        refuse_results_without_config(run_dir)
        if resume_asked:
            raise GroklabError(f"{run_dir}: nothing to resume (no {STATE_FILE}); start it without --resume")
        return Plan("fresh")
    check_same_run(run_dir, read_config(run_dir), cfg, data)
    st = status(run_dir)
    if st == "done":
        return Plan("done")
    if st == "failed":
        if not (retry_failed or resume_asked):
            return Plan("failed", failure=read_failure(run_dir))
        step = saved_step(run_dir)
        if step is None:
            return Plan("fresh")
        check_derived_files(run_dir, data)
        return Plan("resume", step)
    if st == "partial":
        check_derived_files(run_dir, data)
        return Plan("resume", saved_step(run_dir) or 0)
    if resume_asked:  # config written, killed before its first checkpoint: nothing to keep
        raise GroklabError(f"{run_dir}: nothing to resume (no {STATE_FILE}); start it without --resume")
    return Plan("fresh")


def refuse_results_without_config(run_dir: Path) -> None:
    """A folder that holds a run's results but has lost its config.json cannot be checked against this command,
    and a fresh start would delete those results: refused. (A fresh start never wipes a folder that holds these
    (a run with a checkpoint resumes, a finished one is shown), so a kill part-way through one cannot leave it;
    nor trained weights, evaluations or snapshots without a config.json: a start writes that before its first step.)"""
    kept = [name for name in (SUMMARY_FILE, STATE_FILE, WEIGHTS_FILE) if (run_dir / name).is_file()]
    if (run_dir / METRICS_FILE).is_file() and (run_dir / METRICS_FILE).stat().st_size:
        kept.append(METRICS_FILE)
    if (run_dir / SNAPSHOT_DIR).is_dir() and any((run_dir / SNAPSHOT_DIR).iterdir()):
        kept.append(SNAPSHOT_DIR)
    if kept:
        raise GroklabError(f"{run_dir}: holds a run's results ({', '.join(kept)}) but not its {CONFIG_FILE}, so it "
                           f"cannot be resumed or replaced; put its {CONFIG_FILE} back, or use another --out_dir")


def derived_files(data: RunData) -> dict[str, str]:
    """The files a run folder derives from its config, by path inside it, as a fresh start writes them: the
    copy of its data (splits and manifest, or the text) and its vocabulary."""
    files = {f"{DATA_DIR}/{name}": text for name, text in data.files().items()}
    files[VOCAB_FILE] = data.tokenizer.to_json()
    return files


def check_derived_files(run_dir: Path, data: RunData) -> None:
    """Before a resume: each file derived from the config is either missing (the resume writes it again, byte
    for byte as a fresh start did) or exactly as written; one changed since (a line added to data/train.txt)
    would make the folder describe data it never trained on, and it is not groklab's to overwrite: refused."""
    if (run_dir / DATA_DIR).is_symlink() or ((run_dir / DATA_DIR).exists() and not (run_dir / DATA_DIR).is_dir()):
        raise GroklabError(f"{run_dir / DATA_DIR}: is not the folder groklab wrote (the run's copy of its data); "
                           "move it away (the resume writes it again) or use another --out_dir")
    for name, text in derived_files(data).items():
        path = run_dir / name
        if path.exists() or path.is_symlink():
            if path.is_symlink() or not path.is_file() or path.read_bytes() != text.encode("utf-8"):
                raise GroklabError(f"{path}: differs from what this run trained on (groklab wrote it from the run's "
                                   "config); move it away (the resume writes it again) or use another --out_dir")


def check_same_run(run_dir: Path, saved: SavedConfig, cfg: RunConfig, data: RunData) -> None:
    """Refuse any change to what the run is: its config fields of role "is", and its data by content."""
    diffs = differences(saved.cfg, cfg, roles=("is",))
    if diffs:
        name, old, new = diffs[0]
        hint = (" To train longer, start a new run with the larger budget." if name == "max_steps" else "")
        raise GroklabError(f"{run_dir} holds a run with {name}={old!r}, and this command asks for {name}={new!r}: "
                           f"{name} is part of what a run is, so it cannot change on resume (use the run's own "
                           f"value, or another --out_dir).{hint}")
    old_hash = trained_data_hash(run_dir, saved)
    new_hash = fingerprint(data.files())
    if old_hash != new_hash:
        source = differences(saved.cfg, cfg, roles=("source",))
        said = f" ({source[0][0]} was {source[0][1]!r}, now {source[0][2]!r})" if source else ""
        raise GroklabError(f"{run_dir}: the run was trained on other data than this command gives{said}: content "
                           f"{old_hash[:12]}, now {new_hash[:12]}; use another --out_dir for other data")


def check_model(saved: Any, model: ModelConfig, path: Path) -> None:
    """Weights that record their model config (groklab >= 0.2) load only into that architecture; the context
    length is the data's and is checked by shape."""
    if saved is None:
        return  # written before weights recorded it: the shapes are still checked when loading
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path}: damaged checkpoint metadata (model)")
    ours = dataclasses.asdict(model)
    for name, value in ours.items():
        if name != "block_size" and name in saved and saved[name] != value:
            raise CheckpointError(f"{path}: these weights are of a model with {name}={saved[name]!r}, but the run's "
                                  f"config says {name}={value!r}; they come from another run")
