"""Grokking measures: first crossing, stays-above and held (hysteresis in level and time), and the summary keys
that carry them into summary.json and the results store."""

import json

import pytest

from groklab.metrics import (HOLD_BAND, HOLD_DIP_STEPS, first_step_at_or_above, grokking_summary,
                             steps_to_hold, steps_to_stay_above)
from groklab.store import rundir
from groklab.store.sweepdir import SUMMARY_KEYS

STEPS = list(range(100, 2100, 100))  # an evaluation every 100 steps


def _curve(at: dict[int, float], before: float = 0.01, after: float = 1.0, start: int = 500) -> list[float]:
    """0.01 before `start`, 1.0 from it, with the values of `at` (step -> value) put in."""
    return [at.get(s, before if s < start else after) for s in STEPS]


def test_one_dip_moves_stays_above_but_neither_first_crossing_nor_held():
    # issue 17's case: seed 1 memorised at 562 in a group and at 1,212 alone, because one evaluation dipped to 0.971
    dipped = _curve({1200: 0.971})
    assert first_step_at_or_above(STEPS, dipped, 0.99) == 500
    assert steps_to_stay_above(STEPS, dipped, 0.99) == 1300
    assert steps_to_hold(STEPS, dipped, 0.99) == 500


def test_a_deep_spike_of_one_evaluation_does_not_undo_held():
    # an Adam loss spike long after grokking: accuracy falls to 0.3 for one evaluation, then recovers
    spiked = _curve({1800: 0.3})
    assert steps_to_stay_above(STEPS, spiked, 0.99) == 1900
    assert steps_to_hold(STEPS, spiked, 0.99) == 500
    # evaluated every 10 steps, the same spike spans a few evaluations: still within HOLD_DIP_STEPS
    fine = list(range(10, 2010, 10))
    values = [0.01 if s < 500 else (0.3 if 1800 <= s <= 1800 + HOLD_DIP_STEPS else 1.0) for s in fine]
    assert steps_to_hold(fine, values, 0.99) == 500


def test_a_real_relapse_restarts_held():
    # below the band for more than HOLD_DIP_STEPS steps: it forgot, and held starts again where it comes back
    relapse = _curve({900: 0.5, 1000: 0.5, 1100: 0.5})
    assert steps_to_hold(STEPS, relapse, 0.99) == 1200
    # wandering inside the band (0.90..0.99) for a long stretch is no relapse
    wander = _curve({s: 0.99 - HOLD_BAND + 0.005 for s in range(800, 1600, 100)})
    assert steps_to_hold(STEPS, wander, 0.99) == 500 and steps_to_stay_above(STEPS, wander, 0.99) == 1600
    # and entering needs the threshold itself: a curve that only reaches the band never holds
    assert steps_to_hold(STEPS, [0.95] * len(STEPS), 0.99) is None


def test_a_run_that_ends_in_a_dip_has_not_held():
    assert steps_to_hold(STEPS, _curve({2000: 0.5}), 0.99) is None
    assert steps_to_hold(STEPS, _curve({2000: 0.95}), 0.99) == 500  # inside the band: still held
    assert steps_to_hold([], [], 0.99) is None and first_step_at_or_above([], [], 0.99) is None


def test_summary_reports_every_measure_and_delay_ratio_from_held():
    history = [{"step": s, "train_acc": t, "val_acc": v}
               for s, t, v in zip(STEPS, _curve({1200: 0.971}, start=300), _curve({1900: 0.2}, start=1500))]
    s = grokking_summary(history, 0.99)
    assert (s["steps_to_memorise"], s["steps_to_memorise_first"], s["steps_to_memorise_held"]) == (1300, 300, 300)
    assert (s["steps_to_grok"], s["steps_to_grok_first"], s["steps_to_grok_held"]) == (2000, 1500, 1500)
    assert s["grokking_delay"] == 1200 and s["grokking_ratio"] == pytest.approx(5.0)
    assert s["best_val_acc"] == 1.0 and s["final"]["step"] == 2000
    never = grokking_summary([{"step": 1, "train_acc": 0.5, "val_acc": 0.1}], 0.99)
    assert never["grokking_delay"] is None and never["grokking_ratio"] is None and never["steps_to_grok_held"] is None


def test_new_keys_are_read_back_checked_and_reach_the_results_store(tmp_path):
    for key in ("steps_to_memorise_first", "steps_to_grok_first", "steps_to_memorise_held", "steps_to_grok_held"):
        assert key in SUMMARY_KEYS
        (tmp_path / rundir.SUMMARY_FILE).write_text(json.dumps({"final": {}, key: 12}))
        assert rundir.read_summary(tmp_path)[key] == 12
        (tmp_path / rundir.SUMMARY_FILE).write_text(json.dumps({"final": {}, key: "soon"}))
        with pytest.raises(rundir.CheckpointError, match=key):
            rundir.read_summary(tmp_path)
    (tmp_path / rundir.SUMMARY_FILE).write_text(json.dumps({"final": {}, "steps_to_grok": 5}))  # from before them
    assert rundir.read_summary(tmp_path)["steps_to_grok"] == 5


def test_a_trained_run_writes_them_and_the_store_reads_them(tmp_path):
    from groklab.store.sweepdir import collect
    from groklab.training.loop import train_runs
    from tests.helpers import tiny_config

    # a low threshold, so that a run of seconds crosses it (train accuracy 0.24 from step 13 in this config)
    cfg = tiny_config(tmp_path / "run", max_steps=20, learning_rate=1e-2, eval_points_per_decade=8, grok_threshold=0.2)
    [summary] = train_runs([cfg], log=lambda _: None)
    written = json.loads((tmp_path / "run" / rundir.SUMMARY_FILE).read_text())
    history = rundir.read_metrics(tmp_path / "run")
    steps, train = [h["step"] for h in history], [h["train_acc"] for h in history]
    assert written["steps_to_memorise_first"] == first_step_at_or_above(steps, train, 0.2) is not None
    assert written["steps_to_memorise_held"] == steps_to_hold(steps, train, 0.2) == summary["steps_to_memorise_held"]
    [row] = collect(tmp_path / "run")[0]
    assert all(row[k] == written.get(k) for k in SUMMARY_KEYS if k in written)
    assert {"steps_to_grok_first", "steps_to_grok_held"} <= set(row)
