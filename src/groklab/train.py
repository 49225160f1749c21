"""The README's `groklab.train.train_runs` (and `eval_steps`): the training loop lives in `groklab.training.loop`."""

from groklab.training.loop import eval_steps, train_runs

__all__ = ["eval_steps", "train_runs"]
