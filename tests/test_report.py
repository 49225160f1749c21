"""`groklab report`: a tiny sweep (weight decay × train fraction × 2 seeds, batch size × 2 seeds, and a run
that diverges) is trained once; its report must hold each run's own numbers, the heatmaps of the 2-D
experiments with never-grokked cells marked, the mean/band figures, the failed run listed as failed, and
every run's config and command. report.html is rendered in headless Chromium, which must load every image
and show the tables. --tensorboard's event files are read back."""

import base64
import json
import re
import shlex
import shutil
import statistics
import subprocess
from pathlib import Path

import pytest

from groklab.reporting import report as rep
from groklab.cli import build_parser, main
from groklab.cli_args import config_from_args
from groklab.config import RunConfig
from groklab.errors import GroklabError
from groklab.plots import band_stats
from groklab.experiments.sweep import run_sweep
from groklab.experiments.spec import load_spec
from groklab.tables import seconds
from groklab.training.loop import train_runs
from helpers import tiny_config
from test_sweep import TINY_BASE

try:
    import tensorboard  # noqa: F401

    HAS_TB = True
except ImportError:
    HAS_TB = False

LR = 3e-3
WARMUP = 10
STEPS = 40  # TINY_BASE's max_steps
SPEC = 'name = "tiny-report"\ndescription = "a tiny sweep for the report tests"\n' + TINY_BASE + f"""
learning_rate = {LR}
warmup_steps = {WARMUP}
tensorboard = {str(HAS_TB).lower()}

[[experiment]]
name = "phase"
description = "weight decay x train fraction, 2 seeds"
[experiment.grid]
weight_decay = [0.1, 1.0]
train_fraction = [0.5, 0.7]
seed = [1, 2]

[[experiment]]
name = "batch"
description = "batch size x seed"
[experiment.grid]
batch_size = [4, 8]
seed = [1, 2]

[[experiment]]
name = "diverge"
description = "a learning rate that blows up"
[experiment.base]
learning_rate = 1000.0
[experiment.grid]
seed = [3]
"""


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    (root / "spec.toml").write_text(SPEC)
    out = root / "out"
    counts = run_sweep(load_spec(root / "spec.toml"), out, argv=["groklab", "sweep", "spec.toml"],
                       echo=lambda _: None)
    assert counts == {"done": 12, "failed": 1, "partial": 0, "pending": 0}
    rep.write_report(out)
    return out


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def run_dirs(out: Path, experiment: str) -> list[Path]:
    return sorted(p.parent for p in (out / "runs" / experiment).glob("*/config.json"))


def md_tables(text: str) -> list[list[list[str]]]:
    """Every Markdown table of the text as rows of cells (the header row first, the rule dropped)."""
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if not all(re.fullmatch(r"-+", c) for c in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def table_with(text: str, *header: str) -> list[list[str]]:
    found = [t for t in md_tables(text) if all(h in t[0] for h in header)]
    assert found, f"no table with columns {header}"
    return found


def section(text: str, experiment: str) -> str:
    start = text.index(f"## Experiment {experiment}")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def bare(cell: str) -> str:
    return cell.strip("*")


# ---------------------------------------------------------------- the numbers


def test_seed_table_holds_each_runs_final_numbers_and_the_mean_std(sweep):
    text = (sweep / rep.REPORT_MD).read_text()
    [table] = table_with(section(text, "phase"), "seed", "final train loss", "final test acc")
    header, rows = table[0], table[1:]
    col = {h: i for i, h in enumerate(header)}
    assert header[:2] == ["weight_decay", "train_fraction"]
    dirs = run_dirs(sweep, "phase")
    assert len(dirs) == 8
    for d in dirs:
        cfg = read(d / "config.json")["config"]
        summary = read(d / "summary.json")
        final = json.loads((d / "metrics.jsonl").read_text().splitlines()[-1])
        assert summary["final"]["step"] == final["step"] == STEPS
        wd, frac, seed = cfg["optim"]["weight_decay"], cfg["data"]["train_fraction"], cfg["train"]["seed"]
        [row] = [r for r in rows if (r[0], r[1], r[2]) == (f"{wd:g}", f"{frac:g}", str(seed))]
        assert row[col["status"]] == "done"
        assert row[col["final train loss"]] == f"{final['train_loss']:.4f}"
        assert row[col["final train acc"]] == f"{100 * final['train_acc']:.2f}%"
        assert row[col["final val acc"]] == f"{100 * final['val_acc']:.2f}%"
        assert row[col["final test acc"]] == f"{100 * final['test_acc']:.2f}%"
        grok = summary["steps_to_grok"]
        assert row[col["steps to grok"]] == ("not grokked" if grok is None else f"{grok:,}")
    # one mean ± std row per setting, over its two seeds (the sample std, as the seed reports)
    means = [r for r in rows if bare(r[col["seed"]]) == "mean ± std"]
    assert len(means) == 4
    for m in means:
        finals = []
        for d in dirs:
            cfg = read(d / "config.json")["config"]
            if (f"{cfg['optim']['weight_decay']:g}", f"{cfg['data']['train_fraction']:g}") == (bare(m[0]), bare(m[1])):
                finals.append(read(d / "summary.json")["final"])
        assert len(finals) == 2
        acc = [100 * f["test_acc"] for f in finals]
        assert bare(m[col["final test acc"]]) == f"{statistics.fmean(acc):.2f}% ± {statistics.stdev(acc):.2f}"
        loss = [f["train_loss"] for f in finals]
        assert bare(m[col["final train loss"]]) == f"{statistics.fmean(loss):.4f} ± {statistics.stdev(loss):.4f}"


def test_the_failed_run_is_listed_as_failed_with_its_reason(sweep):
    text = (sweep / rep.REPORT_MD).read_text()
    failure = read(next((sweep / "runs/diverge").glob("*/failed.json")))
    assert failure["reason"].startswith("non-finite")
    part = section(text, "diverge")
    [table] = table_with(part, "seed", "status")
    assert [r[1] for r in table[1:]] == ["failed"]
    assert f"`diverge/seed=3`: failed at step {failure['step']:,}: {failure['reason']}" in part
    assert "1 run(s) failed: `diverge/seed=3`" in text
    [runs] = table_with(text, "run", "status", "wall time", "device")
    assert ["diverge/seed=3", "failed"] == runs[-1][:2]
    assert {r[1] for r in runs[1:-1]} == {"done"}


def test_every_run_has_its_config_command_device_and_wall_time(sweep):
    text = (sweep / rep.REPORT_MD).read_text()
    [runs] = table_with(text, "run", "status", "wall time", "device")
    ids = [r[0] for r in runs[1:]]
    assert len(ids) == 13 and len(set(ids)) == 13
    for d in run_dirs(sweep, "phase") + run_dirs(sweep, "batch"):
        meta, saved = read(d / "meta.json"), read(d / "config.json")
        run_id = f"{d.parent.name}/{d.name}"
        [row] = [r for r in runs if r[0] == run_id]
        assert row[4].startswith(meta["device"]) and row[6] == meta["groklab_version"]
        assert row[3] == seconds(read(d / "summary.json")["wall_time_s"])
        assert json.dumps(saved["config"], indent=2, sort_keys=True) in text
        assert shlex.join(saved["argv"]) in text  # the command as run
        # the stand-alone command given for the run parses back to exactly its config
        cmd = rep.run_command(saved["config"])
        assert shlex.join(cmd) in text
        args = build_parser().parse_args(cmd[1:])
        assert config_from_args(args, RunConfig()) == RunConfig.from_dict(saved["config"]).replace(resume=False)
    assert "`groklab sweep spec.toml`" in text


# ---------------------------------------------------------------- figures


def test_heatmaps_of_the_2d_experiments_and_mean_band_figures(sweep):
    text = (sweep / rep.REPORT_MD).read_text()
    files = sorted(p.name for p in (sweep / rep.FILES_DIR).glob("*.png"))
    for name in files:  # every figure is a real PNG and the Markdown shows it
        assert (sweep / rep.FILES_DIR / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({rep.FILES_DIR}/{name})" in text
    assert len(re.findall(r"!\[[^\]]*\]\(report_files/", text)) == len(files)
    phase, batch = section(text, "phase"), section(text, "batch")
    # weight decay × train fraction, seeds aggregated; batch size × seed, one run a cell
    assert "heatmap of steps to grok over weight_decay and train_fraction" in phase
    assert "heatmap of steps to grok over batch_size and seed" in batch
    assert "heatmap" not in section(text, "diverge")
    # one mean-and-band figure per setting with seeds, each seed's own figure one click away
    assert len(re.findall(r"!\[mean and band of ", phase)) == 4
    assert len(re.findall(r"!\[mean and band of ", batch)) == 2
    assert len(re.findall(r"!\[curves of phase/", phase)) == 8
    # the caption counts the never-grokked cells, as the runs say
    for name, part in (("phase", phase), ("batch", batch)):
        runs = rep._load(sweep)[2]
        cells = {}
        for r in runs:
            if r.row["experiment"] == name:
                key = tuple(v for k, v in r.params.items() if name == "batch" or k != "seed")
                cells.setdefault(key, []).append(r.row["steps_to_grok"])
        never = sum(all(s is None for s in v) for v in cells.values())
        assert f"Cells: {never} never grokked (grey, hatched)" in part


def _run(status="done", grok=None, memorise=None, max_steps=40, seed=1, **params):
    row = {"run_id": f"x/seed={seed}", "status": status, "steps_to_grok": grok, "steps_to_memorise": memorise,
           "max_steps": max_steps, "seed": seed, "failed_step": None}
    return rep.Run(row, {"seed": seed, **params}, [], {}, None, {})


def test_heatmap_cells_mark_never_grokked_partial_failed_and_missing():
    assert rep.heatmap_cell([_run(grok=300, seed=1), _run(grok=100, seed=2), _run(grok=200, seed=3)]) == {
        "value": 200, "text": "200\n3/3 grokked", "kind": "grokked"}
    assert rep.heatmap_cell([_run(grok=1234)]) == {"value": 1234, "text": "1,234", "kind": "grokked"}
    # a seed that never grokked counts as +inf: half of them never grokked, so the median is past the budget
    cell = rep.heatmap_cell([_run(grok=100), _run(grok=None)])
    assert cell == {"value": None, "text": "median\n> 40\n1/2 grokked", "kind": "partial"}
    cell = rep.heatmap_cell([_run(grok=100), _run(grok=300), _run(grok=None)])
    assert cell == {"value": 300, "text": "300\n2/3 grokked", "kind": "partial"}
    never = rep.heatmap_cell([_run(grok=None, max_steps=5000), _run(grok=None, max_steps=5000)])
    assert never == {"value": None, "text": "never\n(> 5,000)", "kind": "never"}
    assert rep.heatmap_cell([_run("failed")])["text"] == "failed"
    assert rep.heatmap_cell([_run(grok=None), _run("failed")])["text"] == "never\n(> 40)\n1 failed"
    assert rep.heatmap_cell([_run("pending")]) == {"value": None, "text": "not finished", "kind": "untrained"}
    assert rep.heatmap_cell([_run(grok=50), _run("partial")])["text"] == "50\n1/2 grokked\n1 not finished"
    assert rep.heatmap_cell([])["kind"] == "missing"
    # which axes make the heatmap
    runs = [_run(seed=s, wd=w, frac=f) for s in (1, 2) for w in (0.1, 1) for f in (0.3, 0.5)]
    assert rep.heatmap_axes(["wd", "frac", "seed"], runs) == ("wd", "frac", [])
    assert rep.heatmap_axes(["wd", "seed"], [_run(seed=s, wd=w) for s in (1, 2) for w in (0.1, 1)]) == (
        "wd", "seed", [])
    assert rep.heatmap_axes(["wd"], [_run(wd=w) for w in (0.1, 1)]) is None
    assert rep.heatmap_axes(["seed"], [_run(seed=s) for s in (1, 2)]) is None


def test_band_stats_use_the_runs_evaluated_at_each_step():
    a = [{"step": 1, "val_acc": 0.0}, {"step": 10, "val_acc": 0.5}, {"step": 100, "val_acc": 1.0}]
    b = [{"step": 1, "val_acc": 0.2}, {"step": 10, "val_acc": 0.1}]  # stopped early
    steps, mean, lo, hi, n = band_stats([a, b], "val_acc")
    assert steps == [1, 10, 100] and n == [2, 2, 1]
    assert mean == pytest.approx([0.1, 0.3, 1.0]) and lo == [0.0, 0.1, 1.0] and hi == [0.2, 0.5, 1.0]


# ---------------------------------------------------------------- one file, offline


def test_html_is_self_contained(sweep):
    page = (sweep / rep.REPORT_HTML).read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == len(list((sweep / rep.FILES_DIR).glob("*.png")))
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:4] == b"\x89PNG"
    assert not re.search(r'(src|href)="(https?:|//|file:)', page)
    assert "<script" not in page and "<link" not in page
    assert page.count("<table") == (sweep / rep.REPORT_MD).read_text().count("\n|---")


def test_a_single_run_folder_and_the_cli(tmp_path, capsys):
    run = tmp_path / "run"
    train_runs([tiny_config(run, max_steps=20)], argv=["groklab", "train", "x"], log=lambda _: None)
    assert main(["report", str(run)]) == 0
    assert "report.html" in capsys.readouterr().out
    text = (run / rep.REPORT_MD).read_text()
    summary = read(run / "summary.json")
    [table] = table_with(text, "seed", "final train acc")
    assert table[1][2] == f"{summary['final']['train_loss']:.4f}"
    assert "![curves of run](report_files/001-curves-run.png)" in text
    assert "groklab train x" in text
    assert (run / rep.REPORT_HTML).read_text().count("data:image/png;base64,") == 1
    # an error is one line and exit status 2
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.startswith("groklab: error: ")
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "neither a sweep folder" in capsys.readouterr().err


def test_reproduce_ends_by_writing_the_report(sweep, monkeypatch):
    from groklab import workflows as reproduce

    trained = []
    monkeypatch.setattr(reproduce, "run_sweep",
                        lambda spec, folder, *a, **k: trained.append(folder.path) or {"failed": 0})

    def tables(study, folder):
        (folder / "tables.md").write_text("the tables")
        return folder / "tables.md"

    monkeypatch.setattr(reproduce, "write_tables", tables)
    (sweep / rep.REPORT_HTML).unlink()
    lines = []
    reproduce.reproduce("seed-003", sweep, echo=lines.append)
    assert trained == [sweep] and (sweep / rep.REPORT_HTML).exists()
    assert lines[-1].startswith(f"report written: {sweep / rep.REPORT_HTML}")


def test_reproduce_leaves_compiling_to_the_device_except_in_a_quick_study(tmp_path, monkeypatch):
    from groklab import workflows as reproduce

    given = []
    monkeypatch.setattr(reproduce, "run_sweep", lambda spec, folder, overrides, **k: given.append(overrides) or {})
    monkeypatch.setattr(reproduce, "write_tables", lambda study, folder: tmp_path / "t.md")
    monkeypatch.setattr(reproduce, "write_report", lambda folder, echo: None)
    (tmp_path / "t.md").write_text("")
    study = tmp_path / "study"
    reproduce.reproduce("seed-000", study, echo=lambda _: None)
    reproduce.reproduce("seed-000", study, quick=True, echo=lambda _: None)
    reproduce.reproduce("seed-000", study, quick=True, overrides={"compile": True}, echo=lambda _: None)
    reproduce.reproduce("seed-000", study, overrides={"compile": False}, echo=lambda _: None)
    reproduce.reproduce("seed-000", study, backend="ray", echo=lambda _: None)
    # unset: the run's default (compiled on a CUDA device only: test_engine); a quick study is not compiled
    # unless asked, its few thousand steps take less than compiling its groups would
    assert [o.get("compile") for o in given] == [None, False, True, False, None]


def test_a_moved_sweep_folder_still_reports_its_runs(sweep, tmp_path, capsys):
    moved = tmp_path / "moved"
    shutil.copytree(sweep, moved, ignore=shutil.ignore_patterns("report*", "tb", "*.safetensors"))
    gone = tmp_path / "gone"  # where the sweep was trained, as sweep.json recorded it
    (moved / "sweep.json").write_text((moved / "sweep.json").read_text().replace(str(sweep), str(gone)))
    assert main(["report", str(moved)]) == 0
    from groklab.store.sweepdir import collect

    statuses = [r["status"] for r in collect(moved)[0]]
    assert statuses == [r["status"] for r in collect(sweep)[0]] and "done" in statuses
    assert (moved / "report.html").stat().st_size > 0


# ---------------------------------------------------------------- TensorBoard


@pytest.mark.skipif(not HAS_TB, reason="tensorboard is not installed (pip install 'groklab[tb]')")
def test_tensorboard_event_files_hold_the_runs_scalars(sweep):
    import torch
    from safetensors.torch import load_file
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for d in run_dirs(sweep, "phase")[:2] + run_dirs(sweep, "batch")[:1]:
        acc = EventAccumulator(str(d / "tb"))
        acc.Reload()
        tags = set(acc.Tags()["scalars"])
        assert tags == {"loss/train", "loss/val", "loss/test", "accuracy/train", "accuracy/val", "accuracy/test",
                        "weight_norm", "learning_rate"}
        history = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
        for split in ("train", "val", "test"):
            events = acc.Scalars(f"loss/{split}")
            assert [e.step for e in events] == [h["step"] for h in history]
            assert [e.value for e in events] == pytest.approx([h[f"{split}_loss"] for h in history], rel=1e-6)
            events = acc.Scalars(f"accuracy/{split}")
            assert [e.value for e in events] == pytest.approx([h[f"{split}_acc"] for h in history], rel=1e-6)
        lrs = acc.Scalars("learning_rate")  # with its linear warm-up
        assert [e.value for e in lrs] == pytest.approx([LR * min(e.step / WARMUP, 1) for e in lrs], rel=1e-6)
        norms = acc.Scalars("weight_norm")
        weights = load_file(d / "model.safetensors")  # the weights of the last step
        total = torch.linalg.vector_norm(torch.cat([w.flatten() for w in weights.values()])).item()
        assert norms[-1].step == STEPS and norms[-1].value == pytest.approx(total, rel=1e-4)
    # the run that failed logged its evaluations up to the failure, and nothing after
    [failed] = run_dirs(sweep, "diverge")
    acc = EventAccumulator(str(failed / "tb"))
    acc.Reload()
    assert max(e.step for e in acc.Scalars("loss/train")) < read(failed / "failed.json")["step"]


def test_tensorboard_missing_is_a_clear_error(monkeypatch, tmp_path):
    import sys
    from types import SimpleNamespace

    from groklab.training.tensorboard import TensorBoard

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    member = SimpleNamespace(cfg=RunConfig().replace(tensorboard=True), run_dir=tmp_path)
    with pytest.raises(GroklabError, match=r"pip install 'groklab\[tb\]'"):
        TensorBoard.open([member], 0)
    assert TensorBoard.open([SimpleNamespace(cfg=RunConfig(), run_dir=tmp_path)], 0) is None


# ---------------------------------------------------------------- a real browser

CHECK = """<script>
window.addEventListener("load", () => {
  const images = [...document.images].map(i => ({complete: i.complete, width: i.naturalWidth, alt: i.alt}));
  const tables = [...document.querySelectorAll("table")].map(t => ({
    rows: t.rows.length, header: [...(t.tHead ? t.tHead.rows[0].cells : [])].map(c => c.textContent),
    visible: t.getBoundingClientRect().height > 0 || t.closest("details") !== null}));
  const out = document.createElement("pre");
  out.id = "groklab-check";
  out.textContent = JSON.stringify({images, tables, title: document.title});
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(chromium() is None, reason="no chromium binary on PATH (CI installs Debian's chromium: .ci/run)")
def test_report_renders_in_headless_chromium(sweep, tmp_path):
    browser = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--no-first-run", "--disable-extensions", f"--user-data-dir={tmp_path / 'profile'}"]
    page = (sweep / rep.REPORT_HTML).read_text()
    checked = tmp_path / "checked.html"
    checked.write_text(page.replace("</body>", CHECK + "</body>"))
    dom = subprocess.run(browser + ["--virtual-time-budget=10000", "--dump-dom", checked.as_uri()],
                         capture_output=True, text=True, timeout=180, check=False)
    found = re.search(r'<pre id="groklab-check">(.*?)</pre>', dom.stdout, re.DOTALL)
    assert found, f"the page did not load in chromium: {dom.stderr[-2000:]}"
    import html

    result = json.loads(html.unescape(found.group(1)))
    n_figures = len(list((sweep / rep.FILES_DIR).glob("*.png")))
    assert len(result["images"]) == n_figures
    assert all(i["complete"] and i["width"] > 0 for i in result["images"]), result["images"]
    assert result["title"] == "groklab report: tiny-report"
    headers = [t["header"] for t in result["tables"]]
    seed_tables = [h for h in headers if "final test acc" in h and "steps to grok" in h]
    assert len(seed_tables) == 3  # phase, batch, diverge
    assert any("device" in h and "wall time" in h for h in headers)
    assert all(t["rows"] > 1 for t in result["tables"])

    shot = tmp_path / "report.png"
    subprocess.run(browser + ["--window-size=1280,2600", f"--screenshot={shot}", (sweep / rep.REPORT_HTML).as_uri()],
                   capture_output=True, timeout=180, check=False)
    assert shot.exists(), "chromium wrote no screenshot"
    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))
    assert pixels.shape[:2] == (2600, 1280)
    gray = pixels[..., :3].mean(axis=2)
    assert gray.std() > 0.05  # not a blank page: text, tables and figures
    assert (gray < 0.5).mean() > 0.005


def test_seed000_division_table_points_to_the_number_tokenizer_only_when_characters_failed():
    from groklab.reporting.study_tables import division_note as _division_note

    def run(tokenizer, grok, status="done"):
        return {"tokenizer": tokenizer, "steps_to_grok": grok, "status": status}

    assert "--tokenizer number" in _division_note([run("char", None), run("char", None), run("char", 5, "failed")])
    assert _division_note([run("char", None), run("char", 9000)]) == ""  # one generalised: nothing to explain
    assert _division_note([run("number", None)]) == ""
    assert _division_note([run("char", None, "partial")]) == ""  # nothing finished yet
