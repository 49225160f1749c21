"""examples/notebook.ipynb runs top to bottom in a real Jupyter kernel (nbclient), with a small config put into
its `parameters` cell: the live curve is redrawn at every evaluation, the kernel's matplotlib backend is the
same afterwards, and the hooked plain module gives groklab's logits (the notebook asserts both)."""

import base64
import os
from pathlib import Path

import pytest

from groklab.training.loop import eval_steps

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "notebook.ipynb"
SMALL = ('from groklab.presets import main_job_config\n\n'
         'cfg = main_job_config().replace(out_dir="out/notebook-small", max_steps=30, n_embd=32, batch_size=64, '
         'eval_points_per_decade=4, early_stop_evals=0)')


def test_the_example_notebook_runs_with_a_live_curve_and_the_backend_untouched(tmp_path, monkeypatch):
    # the kernel imports this checkout's groklab, whatever else is installed
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    [params] = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert "main_job_config()" in params.source  # the notebook trains the README's main job
    params.source = SMALL
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell's traceback, if any cell fails
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "matplotlib backend: module://matplotlib_inline.backend_inline" in text  # Jupyter's own, kept
    assert "30/74= ->" in text and "attention pattern (1, 4, 4, 4)" in text
    redraws = int(text.split(" redraws")[0].split()[-1])
    assert redraws == len(eval_steps(30, 4))  # one redraw an evaluation
    # the live figure is a real PNG, updated in place (display_id), not a new output each time
    [image] = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert base64.b64decode(image["data"]["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "out" / "notebook-small" / "curves.png").is_file()
