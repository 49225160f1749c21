"""train_runs(on_eval=...): a notebook's hook, called after every evaluation with each run's rows so far."""

import copy
import json

from groklab.training.loop import eval_steps, train_runs
from helpers import tiny_config


def test_on_eval_sees_every_evaluation_of_every_run_as_it_comes(tmp_path):
    calls = []
    configs = [tiny_config(tmp_path / f"seed{s}", seed=s) for s in (1, 2)]  # one group of two runs
    train_runs(configs, log=lambda _: None,
               on_eval=lambda step, histories: calls.append((step, copy.deepcopy(histories))))
    assert [step for step, _ in calls] == eval_steps(12, 3)
    final = [[json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
             for name in ("seed1", "seed2")]
    for k, (step, histories) in enumerate(calls):
        assert len(histories) == 2
        for rows, saved in zip(histories, final):
            assert rows == saved[: k + 1]  # the rows so far, as metrics.jsonl holds them
            assert rows[-1]["step"] == step
