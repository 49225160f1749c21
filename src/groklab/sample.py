"""The README's `groklab.sample.load_run` / `complete`: loading is `groklab.store.loadrun`'s, generation
`groklab.analysis.sample`'s."""

from groklab.analysis.sample import complete, evaluate_split, generate, interactive, prompts_from
from groklab.store.loadrun import LoadedRun, load_run

__all__ = ["LoadedRun", "complete", "evaluate_split", "generate", "interactive", "load_run", "prompts_from"]
