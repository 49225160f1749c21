import json

import pytest
import torch
from safetensors.torch import load_file

from groklab.store import checkpoint as ckpt
from groklab.errors import GroklabError
from groklab.training.interrupts import Interrupted
from groklab.metrics import steps_to_stay_above
from groklab.store.rundir import saved_step
from groklab.training.loop import eval_steps, train_runs
from tests.helpers import stop_after, tiny_config


def _quiet(_msg):
    pass


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_eval_schedule_is_log_spaced_and_ends_at_last_step():
    steps = eval_steps(1000, 4)
    assert steps[0] == 1 and steps[-1] == 1000
    assert steps == sorted(set(steps))
    assert {10, 100, 1000} <= set(steps) and len(steps) <= 13
    assert set(range(250, 1001, 250)) <= set(eval_steps(1000, 4, interval=250))


def test_steps_to_grok_needs_val_to_stay_above():
    assert steps_to_stay_above([1, 2, 3, 4], [0.1, 0.995, 0.5, 0.999], 0.99) == 4
    assert steps_to_stay_above([1, 2, 3], [0.995, 0.999, 1.0], 0.99) == 1
    assert steps_to_stay_above([1, 2], [0.1, 0.2], 0.99) is None


def test_run_directory_has_everything(tmp_path):
    cfg = tiny_config(tmp_path / "run", plot=True)
    [summary] = train_runs([cfg], argv=["groklab", "train"], log=_quiet)
    run = tmp_path / "run"
    for name in ("config.json", "meta.json", "vocab.json", "metrics.jsonl", "model.safetensors",
                 "state.safetensors", "summary.json", "curves.png", "data/train.txt", "data/val.txt",
                 "data/test.txt", "data/manifest.json"):
        assert (run / name).is_file(), name
    rows = _metrics(run)
    assert [r["step"] for r in rows] == eval_steps(12, 3)
    assert all(0 <= r["val_acc"] <= 1 and r["train_loss"] > 0 for r in rows)
    assert summary["steps"] == 12 and "steps_to_grok" in summary
    assert json.loads((run / "config.json").read_text())["argv"] == ["groklab", "train"]
    weights = load_file(run / "model.safetensors")
    assert "h.0.attn.c_attn.weight" in weights


def test_resume_is_exact(tmp_path, monkeypatch):
    """12 steps straight == 5 steps, an interrupt, then the same command: same weights and metrics, bit for
    bit (step 5 is no evaluation step, so the stop saves a checkpoint of its own)."""
    straight = tiny_config(tmp_path / "a")
    train_runs([straight], log=_quiet)
    stop = stop_after(monkeypatch, 4)
    with pytest.raises(Interrupted, match="at step 4"):
        train_runs([tiny_config(tmp_path / "b")], log=_quiet, stop=stop)
    monkeypatch.undo()
    assert saved_step(tmp_path / "b") == 4 and [r["step"] for r in _metrics(tmp_path / "b")] == [1, 2]
    train_runs([tiny_config(tmp_path / "b")], log=_quiet)
    a, b = load_file(tmp_path / "a/model.safetensors"), load_file(tmp_path / "b/model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    strip = lambda rows: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]  # noqa: E731
    assert strip(_metrics(tmp_path / "a")) == strip(_metrics(tmp_path / "b"))


def test_a_finished_run_is_never_trained_again_nor_resumed_with_changes(tmp_path):
    cfg = tiny_config(tmp_path / "run", max_steps=2)
    [first] = train_runs([cfg], log=_quiet)
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()}
    for again in (cfg, cfg.replace(resume=True)):  # the same command, or --resume: its result, nothing trained
        [same] = train_runs([again], log=_quiet)
        assert same["already"] and same["steps"] == first["steps"] and same["final"] == first["final"]
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir() if p.is_file()} == before
    with pytest.raises(GroklabError, match="nothing to resume"):
        train_runs([tiny_config(tmp_path / "new", resume=True)], log=_quiet)
    with pytest.raises(GroklabError, match=r"holds a run with weight_decay=0.1, and this command asks for "
                                           r"weight_decay=0.5"):
        train_runs([tiny_config(tmp_path / "run", resume=True, weight_decay=0.5)], log=_quiet)


def test_seeds_in_a_group_equal_separate_runs(tmp_path):
    alone = [tiny_config(tmp_path / f"alone{s}", seed=s) for s in (1, 2)]
    for c in alone:
        train_runs([c], log=_quiet)
    group = [tiny_config(tmp_path / f"group{s}", seed=s) for s in (1, 2)]
    train_runs(group, log=_quiet)
    for s in (1, 2):
        a = load_file(tmp_path / f"alone{s}/model.safetensors")
        g = load_file(tmp_path / f"group{s}/model.safetensors")
        for k in a:
            torch.testing.assert_close(a[k], g[k], rtol=1e-5, atol=1e-5)  # see test_engine: Adam amplifies rounding
        va = [r["val_loss"] for r in _metrics(tmp_path / f"alone{s}")]
        vg = [r["val_loss"] for r in _metrics(tmp_path / f"group{s}")]
        assert va == pytest.approx(vg, rel=1e-5)


def test_memorises_seed_003_sanity_text(tmp_path):
    """Seed 003's sanity run: a 1-layer model memorises 'I love machine learning' (loss on every token)."""
    text = tmp_path / "textfile.txt"
    text.write_text("I love machine learning")
    cfg = tiny_config(tmp_path / "ckpt", operators=None, prime=None, train_fraction=None, val_fraction=None,
                      text_file=str(text), block_size=16, batch_size=1, max_steps=400, learning_rate=1e-2,
                      checkpoint_interval=1000)
    train_runs([cfg], log=_quiet)
    from groklab.analysis.sample import complete
    from groklab.store.loadrun import load_run

    run = load_run(tmp_path / "ckpt" / "model.pt")  # seed 003's spelling: a file inside the run directory
    assert complete(run, "I", 22, temperature=0, top_k=None, generator=None) == "I love machine learning"


def test_checkpoint_files_are_safetensors_with_format(tmp_path):
    train_runs([tiny_config(tmp_path / "run", max_steps=3)], log=_quiet)
    weights, meta = ckpt.load_weights(tmp_path / "run/model.safetensors")
    assert meta["step"] == 3 and meta["model"]["n_embd"] == 16 and meta["vocab"]["kind"] == "char"
    _, optim, state_meta = ckpt.load_state(tmp_path / "run/state.safetensors")
    assert set(optim) == {"exp_avg", "exp_avg_sq"} and state_meta["step"] == 3


def test_early_stop_once_grokked_for_k_evaluations(tmp_path, monkeypatch):
    """A run whose val accuracy is >= threshold stops after exactly k evaluations (evaluation is stubbed
    to report perfect accuracy; the loop, checkpoint and summary are real)."""
    import groklab.training.evaluation as evaluation_mod

    real = evaluation_mod.evaluate
    def perfect(model, split):  # loss as is, exact match and per-token accuracy 1
        loss, _, _ = real(model, split)
        return loss, torch.ones(1), torch.ones(1)

    monkeypatch.setattr(evaluation_mod, "evaluate", perfect)
    cfg = tiny_config(tmp_path / "run", max_steps=1000, early_stop_evals=3)
    [summary] = train_runs([cfg], log=_quiet)
    assert [r["step"] for r in _metrics(tmp_path / "run")] == eval_steps(1000, 3)[:3]
    assert summary["steps"] == eval_steps(1000, 3)[2]
    assert saved_step(tmp_path / "run") == summary["steps"]


def test_accuracy_and_eval_loss_score_the_answer_even_when_training_on_every_token(tmp_path):
    """--loss_on all trains on the operands too, but they are random: exact match over them could never be
    1, so evaluation scores the answer after '=' (as with the default), and training keeps every token."""
    from groklab.data.dataset import load_run_data

    cfg = tiny_config(tmp_path / "all", loss_on="all")
    data = load_run_data(cfg.data, cfg.model)
    default = load_run_data(tiny_config(tmp_path / "ans").data, cfg.model)
    for split in ("train", "val"):
        assert torch.equal(data.scored[split].targets, default.splits[split].targets)
    assert (data.splits["train"].targets >= 0).sum() > (default.splits["train"].targets >= 0).sum()
    out = train_runs([cfg.replace(max_steps=150)], log=_quiet)
    assert out[0]["final"]["train_acc"] > 0.2  # 7*7 pairs: learnable fast once the score is the answer


@pytest.mark.parametrize("field, value", [("block_size", 2**70), ("n_embd", 2**70), ("n_layer", 2**70),
                                          ("batch_size", 2**70), ("eval_points_per_decade", 2**70),
                                          ("grokfast_window", 2**70)])
def test_sizes_far_beyond_any_model_are_refused_not_crashed(tmp_path, field, value):
    """Found by fuzzing: --block_size 2**70 overflowed torch.zeros with a traceback; a huge evaluation density
    would have looped for hours before the first step."""
    with pytest.raises(GroklabError, match=f"{field}: must be at most"):
        tiny_config(tmp_path / "x", **{field: value})


def test_loss_on_answer_only_leaves_the_end_of_line_out_of_training_and_scoring(tmp_path):
    """--loss_on answer_only (the Grokfast paper's code: one loss term, the answer): the end-of-line target is
    neither trained on nor part of exact match, so a model that never learns where a line stops still scores
    its answers; the default trains and scores the answer and the end of line."""
    from groklab.data.dataset import load_run_data

    cfg = tiny_config(tmp_path / "only", loss_on="answer_only", tokenizer="number")
    only = load_run_data(cfg.data, cfg.model)
    both = load_run_data(tiny_config(tmp_path / "both", tokenizer="number").data, cfg.model)
    eol = both.tokenizer.encode("\n")[0]
    for split in ("train", "val"):
        t_only, t_both = only.scored[split].targets, both.scored[split].targets
        assert ((t_both == eol).sum(1) == 1).all() and not (t_only == eol).any()
        assert torch.equal(t_only, t_both.masked_fill(t_both == eol, -1))  # the answer alone is left
        assert ((t_only >= 0).sum(1) == 1).all()  # one token per number: one loss term an equation
    out = train_runs([cfg.replace(max_steps=150)], log=_quiet)
    assert out[0]["final"]["train_acc"] > 0.2
