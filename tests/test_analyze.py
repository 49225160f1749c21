"""Progress measures: a planted frequency is found, restricted/excluded loss separate a Fourier solution from
the rest, and `groklab analyze` draws them over a real run's snapshots."""

import json
import math
import shutil

import pytest
import torch

from groklab.analysis.analyze import fourier_norms, key_frequencies, restricted_excluded
from groklab.cli import main
from groklab.training.loop import train_runs
from helpers import assert_clean_error, hide, run_cli, tiny_config


@pytest.mark.parametrize("k", [1, 7, 23])
def test_a_planted_frequency_is_recovered_from_a_synthetic_embedding(k):
    p, d = 97, 32
    g = torch.Generator().manual_seed(k)
    n = torch.arange(p, dtype=torch.float32)[:, None]
    u, v = torch.randn(2, 1, d, generator=g)
    emb = torch.cos(2 * math.pi * k * n / p) * u + torch.sin(2 * math.pi * k * n / p) * v
    emb = emb + 0.05 * torch.randn(p, d, generator=g)
    norms = fourier_norms(emb)
    assert norms.shape == (p // 2 + 1,)
    assert key_frequencies(norms) == [k]


def test_two_planted_frequencies_strongest_first():
    p = 53
    n = torch.arange(p, dtype=torch.float32)[:, None]
    emb = 3 * torch.cos(2 * math.pi * 5 * n / p) * torch.ones(1, 4) + torch.sin(2 * math.pi * 11 * n / p) * torch.ones(1, 4)
    assert key_frequencies(fourier_norms(emb)) == [5, 11]


def test_restricted_and_excluded_loss_separate_a_fourier_solution():
    p, k = 31, 4
    n = torch.arange(p, dtype=torch.float64)
    s = n[:, None, None] + n[None, :, None]
    logits = 8 * torch.cos(2 * math.pi * k * (s - n[None, None, :]) / p)  # the "clock" solution, pure
    pairs = torch.cartesian_prod(torch.arange(p), torch.arange(p))
    r = restricted_excluded(logits, [k], pairs)
    assert r["restricted_loss"] == pytest.approx(r["loss"], rel=1e-6)  # keeping the key frequency keeps it all
    assert r["excluded_loss"] == pytest.approx(math.log(p), rel=1e-6)  # removing it leaves uniform guessing
    r_wrong = restricted_excluded(logits, [k + 1], pairs)
    assert r_wrong["restricted_loss"] == pytest.approx(math.log(p), rel=1e-6)
    assert r_wrong["excluded_loss"] == pytest.approx(r["loss"], rel=1e-6)


def test_analyze_a_run_over_its_snapshots(tmp_path, capsys):
    cfg = tiny_config(tmp_path / "run", tokenizer="number", prime=11, max_steps=30, snapshots_per_decade=2)
    train_runs([cfg], log=lambda _: None)
    snaps = sorted(p.name for p in (tmp_path / "run/snapshots").iterdir())
    assert snaps == ["step_0000001.safetensors", "step_0000003.safetensors", "step_0000010.safetensors",
                     "step_0000030.safetensors"]
    assert main(["analyze", str(tmp_path / "run")]) == 0
    out = json.loads((tmp_path / "run/analysis.json").read_text())
    assert [r["step"] for r in out["over_training"]] == [1, 3, 10, 30]
    assert len(out["fourier_norms"]) == 11 // 2 + 1 and 1 <= out["key_frequencies"][0] <= 5
    assert all({"restricted_loss", "excluded_loss", "loss", "weight_norm"} <= set(r) for r in out["over_training"])
    for png in ("analysis_fourier.png", "analysis_progress.png"):
        assert (tmp_path / "run" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "key frequencies" in capsys.readouterr().out


def test_analyze_refuses_a_char_level_run(tmp_path, capsys):
    train_runs([tiny_config(tmp_path / "run", max_steps=3)], log=lambda _: None)
    assert main(["analyze", str(tmp_path / "run")]) == 2
    assert "needs one token per number" in capsys.readouterr().err


@pytest.mark.parametrize("foreign, where", [({"n_head": 4}, "model.safetensors"), ({"n_embd": 8}, "model.safetensors"),
                                            ({"prime": 13}, "model.safetensors"),
                                            ({"n_head": 4}, "snapshots/step_0000003.safetensors")])
def test_analyze_refuses_weights_of_another_run_in_one_line(tmp_path, capsys, reliability, foreign, where):
    """analyze loads every weights file (final and snapshots) through load_run's checks, as sample, evaluate and
    export do: another run's weights were analysed with this run's n_head (exit 0), or crashed on a shape."""
    cfg = tiny_config(tmp_path / "run", tokenizer="number", prime=11, max_steps=10, snapshots_per_decade=2)
    other = tiny_config(tmp_path / "other", tokenizer="number", prime=11, max_steps=4, n_embd=16).replace(**foreign)
    train_runs([cfg], log=lambda _: None)
    train_runs([other], log=lambda _: None)
    shutil.copy(tmp_path / "other/model.safetensors", tmp_path / "run" / where)
    code, _, err = run_cli(capsys, ["analyze", str(tmp_path / "run")])
    message = assert_clean_error(code, err)
    assert "another run" in message or "vocabulary of" in message, message
    assert not (tmp_path / "run/analysis.json").exists()
    reliability("analyze", f"{where} of a run with {foreign}", hide(message, tmp_path))
