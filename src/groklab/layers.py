"""groklab's architecture as data: the layers, bottom to top, and what lives in each. A module imports only
from its own layer or the layers below it, never above, not even inside a function, and no import closes a
cycle; tests/test_layers.py walks every import and enforces it, and scripts/layout.py writes the README's
Layout section from this table and the modules' own docstrings.
"""

# (layer, its modules or packages, in import order; what the layer is for)
LAYERS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("leaves", ("errors", "files", "lock", "machine", "plots", "tables", "metrics", "extras", "layers"),
     "nothing of groklab below them: errors, atomic files, figures, table formats, grokking measures"),
    ("config", ("fields", "config", "presets"), "typed, validated dataclasses: what a run is and how it executes"),
    ("data", ("data",), "operations, tokenizers, equation files, examples and a run's dataset"),
    ("model", ("model",), "the GPT of E runs in one flat buffer, and the plain reference model"),
    ("engine", ("engine",), "one training step for E runs, its optimizers, precision, evaluation, gradient filters"),
    ("store", ("store",), "what is on disk: checkpoints, the run folder, the sweep folder, exports"),
    ("training", ("training",), "the loop, many runs in groups, devices, interrupts, loggers"),
    ("experiments", ("experiments",), "sweep specs, sweeps, the Ray backend, the shipped studies"),
    ("analysis", ("analysis",), "results as DataFrames, progress measures, phases, sampling"),
    ("reporting", ("reporting",), "reports and study tables"),
    ("interface", ("cli", "cli_args", "cli_options", "cli_commands", "workflows", "train", "sample", "results",
                   "export", "ops", "__main__"),
     "the command line, the workflows it runs, and the README's Python API (thin re-exports)"),
)


def layer_of(module: str) -> int | None:
    """The layer index of `groklab.<a>.<b>...` (or of `groklab` itself: the leaves); None if unknown."""
    parts = module.split(".")
    if parts[0] != "groklab":
        return None
    if len(parts) == 1:
        return 0
    for i, (_, members, _) in enumerate(LAYERS):
        if parts[1] in members:
            return i
    return None
