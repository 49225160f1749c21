import json

import torch

from groklab.training.groups import bytes_per_run, chunk_size, plan_groups, train_many
from tests.helpers import tiny_config


def test_runs_group_by_shape_and_schedule(tmp_path):
    cfgs = [tiny_config(tmp_path / "a", seed=1), tiny_config(tmp_path / "b", seed=2, learning_rate=1e-2),
            tiny_config(tmp_path / "c", n_layer=2), tiny_config(tmp_path / "d", batch_size=3),
            tiny_config(tmp_path / "e", max_steps=20), tiny_config(tmp_path / "f", prime=11)]
    # seeds and learning rates share a group; depth, step budget, a longer context (p = 11 has two-digit
    # numbers: 8 tokens instead of 6) and a batch size (padding would make small batches cost as large) do not
    assert plan_groups(cfgs) == [[0, 1], [2], [3], [4], [5]]


def test_chunks_train_like_one_group(tmp_path):
    together = [tiny_config(tmp_path / f"g{s}", seed=s) for s in (1, 2, 3)]
    apart = [tiny_config(tmp_path / f"c{s}", seed=s) for s in (1, 2, 3)]
    train_many(together, log=lambda _: None)
    train_many(apart, log=lambda _: None, max_group=2)
    for s in (1, 2, 3):
        a = [json.loads(x)["val_loss"] for x in (tmp_path / f"g{s}/metrics.jsonl").read_text().splitlines()]
        b = [json.loads(x)["val_loss"] for x in (tmp_path / f"c{s}/metrics.jsonl").read_text().splitlines()]
        assert a == __import__("pytest").approx(b, rel=1e-5)
        assert json.loads((tmp_path / f"c{s}/meta.json").read_text())["group_size"] == (2 if s < 3 else 1)


def test_memory_estimate_grows_with_batch_and_cpu_takes_all(tmp_path):
    cfg = tiny_config(tmp_path / "x")
    small = bytes_per_run(cfg, 8, 13, 100)
    big = bytes_per_run(cfg.replace(batch_size=512), 8, 13, 100)
    assert big > small > 0
    assert chunk_size([cfg] * 7, [None] * 7, torch.device("cpu")) == 7


def test_train_runs_refuses_a_group_with_mixed_loop_settings(tmp_path):
    import pytest

    from groklab.errors import GroklabError
    from groklab.training.loop import train_runs

    mixed = [tiny_config(tmp_path / "a"), tiny_config(tmp_path / "b", early_stop_evals=3)]
    with pytest.raises(GroklabError, match="must share"):
        train_runs(mixed, log=lambda _: None)
    assert not (tmp_path / "a").exists()
