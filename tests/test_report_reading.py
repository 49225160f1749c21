"""A report of a sweep that is half done must not read as something it is not: the first and the last command,
cells of seeds not all trained say so, a run stopped part-way is labelled where its curves appear, the
study's tables (tables.md) and `groklab analyze`'s figures are in it, and the README's pivot example says
something even when no run grokked."""

import re
import shutil

import pytest

from groklab.experiments.spec import load_spec
from groklab.experiments.sweep import prepare, run_sweep
from groklab.errors import GroklabError
from groklab.reporting import report as rep
from groklab.reporting.blocks import Heading, Items, Para, Table, markdown_blocks
from groklab.store.sweepdir import SweepFolder, read_sweep
from groklab.training.loop import train_runs
from helpers import stop_after
from test_report import section, table_with

BASE = ('name = "half"\n[base]\nop = "+"\np = 7\nn_layer = 1\nn_head = 2\nn_embd = 16\nmax_steps = 40\n'
        'batch_size = 8\neval_points_per_decade = 3\ncheckpoint_interval = 10\nplot = false\n[grid]\n'
        'weight_decay = [0.1, 1.0]\ntrain_fraction = [0.6, 0.8]\n')
TABLES = """# A study

Sweep folder: `out`

### Addition, 1 layer

| Task | Seed 1 | Seed 000 reported |
|---|---|---|
| Addition p=7 | 99.00% | 99.04% |

- 1 of 1 cells within 2 points of the report
"""


@pytest.fixture(scope="module")
def half(tmp_path_factory):
    """wd × fraction × seeds 1, 2: seed 1 trained (`groklab sweep s.toml`), seed 2 added by a second command
    and not trained, except one run stopped at step 15; tables.md and an analysis figure beside them."""
    root = tmp_path_factory.mktemp("half")
    (root / "s.toml").write_text(BASE + "seed = [1]\n")
    out = root / "out"
    run_sweep(load_spec(root / "s.toml"), out, argv=["groklab", "sweep", "s.toml", "--out", "out"],
              echo=lambda _: None)
    (root / "s.toml").write_text(BASE + "seed = [1, 2]\n")
    with SweepFolder(out) as folder:
        prepare(folder, load_spec(root / "s.toml"), argv=["groklab", "sweep", "s.toml", "--out", "out", "-q"],
                echo=lambda _: None)
    [cut] = [r for r in read_sweep(out)[1] if r.params == {"weight_decay": 0.1, "train_fraction": 0.6, "seed": 2}]
    mp = pytest.MonkeyPatch()
    with pytest.raises(GroklabError, match="interrupted"):
        train_runs([cut.config], stop=stop_after(mp, 15))
    mp.undo()
    (out / "tables.md").write_text(TABLES)
    done = next(r for r in read_sweep(out)[1] if r.params["seed"] == 1)
    shutil.copy(next((out / "runs").rglob("*.png"), None) or _png(root), done.run_dir / "analysis_fourier.png")
    rep.write_report(out)
    return out, cut, done


def _png(root):
    from groklab.plots import plot_curves

    return plot_curves([{"step": 1, "train_loss": 1.0, "val_loss": 1.0, "train_acc": 0.0, "val_acc": 0.0}],
                       root / "x.png", "x", {})


def test_the_header_has_the_command_that_defined_the_study_and_the_last(half):
    out, _, _ = half
    text = (out / rep.REPORT_MD).read_text()
    [facts] = [t for t in table_with(text, "", "") if t[0][0] == "folder" or any(r[0] == "folder" for r in t)]
    rows = {r[0]: r[1] for r in facts}
    assert rows["first command (defined the study)"] == "`groklab sweep s.toml --out out`"
    assert rows["last command (of 2 run on this folder)"] == "`groklab sweep s.toml --out out -q`"
    assert rows["runs"] == "8: 4 done, 1 partial, 3 pending"


def test_cells_and_curves_of_unfinished_runs_say_so(half):
    out, cut, _ = half
    text = (out / rep.REPORT_MD).read_text()
    part = section(text, "half")
    # every cell has seed 1 done (not grokked in 40 steps) and seed 2 not trained: never, and it says so
    assert ("Cells: 4 never grokked (grey, hatched), 0 where only some seeds grokked (dashed outline), 0 not finished "
            "(white, dotted outline), 0 failed (red, crossed), 4 with some seeds not finished") in part
    runs = rep._load(out)[2]
    cell = rep.heatmap_cell([r for r in runs if r.params.get("weight_decay") == 0.1
                             and r.params.get("train_fraction") == 0.6])
    assert cell == {"value": None, "text": "never\n(> 40)\n1 not finished", "kind": "never", "incomplete": True}
    # the band of that setting and its seed's own curves name the run that stopped, and where (its last
    # evaluation, step 10; the checkpoint is at 15)
    assert "· 1 of 2 unfinished (stopped at step 10)." in part
    assert "seed 2 (partial (evaluated up to step 10 of 40))" in part
    [table] = table_with(part, "seed", "status")
    statuses = [r[table[0].index("status")] for r in table[1:]]
    assert sorted(statuses) == sorted(["done"] * 4 + ["pending"] * 3 + [s for s in statuses if s.startswith("partial")])


def test_the_study_tables_and_analysis_figures_are_in_the_report(half):
    out, _, done = half
    text = (out / rep.REPORT_MD).read_text()
    study = text[text.index("## Against the seed reports"):text.index("## Progress measures")]
    assert "| Addition p=7 | 99.00% | 99.04% |" in study and "- 1 of 1 cells within 2 points of the report" in study
    assert "### Addition, 1 layer" in study and "# A study" not in study
    assert f"`{done.run_id}`: the embeddings' Fourier spectrum" in text
    page = (out / rep.REPORT_HTML).read_text()
    assert '<table class="study">' in page and page.count("data:image/png;base64,") == len(
        list((out / rep.FILES_DIR).glob("*.png")))
    assert "[Against the seed reports](#study-tables)" in text and "[Progress measures](#analysis)" in text


def test_markdown_blocks_read_back_what_groklab_writes():
    blocks = markdown_blocks(TABLES, shift=1, kind="study")
    assert [type(b) for b in blocks] == [Heading, Para, Heading, Table, Items]
    assert blocks[0].level == 2 and blocks[2].level == 4
    assert blocks[3].header == ["Task", "Seed 1", "Seed 000 reported"] and blocks[3].rows == [
        ["Addition p=7", "99.00%", "99.04%"]]


def test_the_readme_pivot_example_says_something_when_no_run_grokked(half):
    pd = pytest.importorskip("pandas")
    from groklab.analysis import results

    readme = (__import__("pathlib").Path(__file__).parents[1] / "README.md").read_text()
    [example] = re.findall(r"^  (r\.runs\..*?)(?:  #.*)?$", readme, re.M)
    r = results.load(half[0])
    assert r.runs["steps_to_grok"].isna().all()  # nothing grokked in 40 steps
    table = eval(example, {"r": r, "pd": pd})
    assert not table.empty and table.shape == (2, 4)
    assert (table.xs("count", axis=1, level=0).sum().sum()) == 8
