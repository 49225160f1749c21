"""Figures never touch pyplot: using groklab in a notebook keeps its matplotlib backend (and pyplot's current
figure) as they were, and groups training in threads may draw at once with the same pixels as one at a time."""

import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from groklab.plots import plot_band, plot_compare, plot_curves, plot_heatmap

ROOT = Path(__file__).resolve().parents[1]


def _history(scale: float) -> list[dict]:
    return [{"step": s, "train_loss": scale / s, "val_loss": 2 * scale / s, "test_loss": None,
             "train_acc": min(1.0, s / 50), "val_acc": min(1.0, s / 200), "test_acc": None}
            for s in (1, 3, 10, 30, 100)]


def test_training_plotting_and_analysis_leave_the_backend_and_pyplot_alone(tmp_path):
    """In a fresh interpreter whose backend is set the way a notebook sets it (here 'svg', any non-Agg one
    shows it): a training run with curves.png, every figure kind, and `groklab analyze`."""
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT / 'tests')!r})
        import matplotlib
        matplotlib.use("svg")
        from helpers import tiny_config
        from groklab.analysis.analyze import analyze
        from groklab.plots import plot_band, plot_compare, plot_heatmap
        from groklab.training.loop import train_runs
        run = {str(tmp_path / 'run')!r}
        [s] = train_runs([tiny_config(run, plot=True, tokenizer="number", prime=11, snapshots_per_decade=1)],
                         log=lambda _: None)
        rows = [{{"step": 1, "train_loss": 1.0, "val_loss": 1.0, "test_loss": None, "train_acc": 0.5,
                 "val_acc": 0.5, "test_acc": None}}]
        plot_band([rows, rows], [{{"memorised": 1, "grokked": None}}] * 2, None, "band")
        plot_compare([("a", [rows]), ("b", [rows])], "val_acc", None, "compare")
        plot_heatmap([[{{"value": 10, "text": "10"}}]], ["x"], ["y"], "x", "y", None, "heatmap")
        analyze(run)
        print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-2:] == ["svg", "False"]
    assert (tmp_path / "run" / "curves.png").is_file() and (tmp_path / "run" / "analysis_progress.png").is_file()


def test_figures_drawn_in_threads_at_once_equal_figures_drawn_in_turn():
    jobs = [
        lambda: plot_curves(_history(1.0), None, "one run", {"memorised": 30, "grokked": 100}),
        lambda: plot_band([_history(1.0), _history(2.0)], [{"memorised": 30, "grokked": 100}] * 2, None, "band"),
        lambda: plot_compare([("a", [_history(1.0)]), ("b", [_history(3.0)])], "val_loss", None, "compare"),
        lambda: plot_heatmap([[{"value": 10, "text": "10"}, {"value": None, "text": "never"}]], ["1", "2"], ["y"],
                             "x", "y", None, "heatmap"),
    ] * 3
    in_turn = [job() for job in jobs]
    with ThreadPoolExecutor(6) as pool:
        at_once = list(pool.map(lambda job: job(), jobs))
    assert all(png[:8] == b"\x89PNG\r\n\x1a\n" for png in in_turn)
    assert at_once == in_turn
