"""Tiny configurations and command-line helpers shared by the tests (seconds each on two CPU cores)."""

import re
from pathlib import Path

import torch
from hypothesis import HealthCheck
from hypothesis import strategies as st
from safetensors.torch import load_file

from groklab.cli import main
from groklab.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig
from groklab.data.ops import OPERATIONS

# hypothesis settings of the fuzz tests: no deadline (two shared CPU cores), large and slow examples allowed
FAST = {"deadline": None,
        "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]}
OP_SYMBOLS = "".join(OPERATIONS)  # every operation's symbol, the permutation tasks' too
json_values = st.recursive(  # any JSON value, for fuzzed manifests and vocabulary files
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


# a sweep spec's [base] of tiny runs (+ mod 7, 1 layer, d 16, 12 steps): append the rest of the spec to it
TINY_SPEC_BASE = """[base]
op = "+"
p = 7
n_layer = 1
n_head = 2
n_embd = 16
max_steps = 12
batch_size = 8
plot = false
device = "cpu"
"""


def tiny_spec(name: str, rest: str) -> str:
    """A sweep spec named `name`: TINY_SPEC_BASE, then `rest` (more [base] keys, then the grid or experiments)."""
    return f'name = "{name}"\n' + TINY_SPEC_BASE + rest


def tiny_config(out_dir, **changes) -> RunConfig:
    cfg = RunConfig(
        data=DataConfig(operators="+", prime=7, tokenizer="char", train_fraction=0.6, val_fraction=0.2),
        model=ModelConfig(n_layer=1, n_head=2, n_embd=16),
        optim=OptimConfig(learning_rate=3e-3, weight_decay=0.1),
        train=TrainConfig(out_dir=str(out_dir), max_steps=12, batch_size=8, eval_points_per_decade=3,
                          checkpoint_interval=5, progress=False, plot=False, device="cpu"),
    )
    return cfg.replace(**changes) if changes else cfg


def same_tensors(a: Path, b: Path) -> bool:
    """Two safetensors files hold the same tensors, bit for bit."""
    x, y = load_file(a), load_file(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def without_key_bias(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A run's weights minus the attention's key biases. A key bias shifts every score of a query equally, so
    softmax ignores it and its true gradient is 0; Adam turns the rounding noise there into ±lr steps, so two
    correct implementations (or one run in groups of other sizes, whose GEMMs round differently) part there by the
    learning rate while agreeing everywhere else."""
    out = {}
    for name, t in state.items():
        if name.endswith("attn.c_attn.bias"):
            C = t.shape[-1] // 3
            t = torch.cat([t[..., :C], t[..., 2 * C:]], dim=-1)
        out[name] = t
    return out


def signal_at_step(monkeypatch, steps: int, signum: int | None = None) -> None:
    """A real Ctrl-C (SIGINT, or `signum`) sent to this process once the engine has taken `steps` steps, as a
    user's would arrive: the command's own handlers take it (monkeypatch.undo() removes it)."""
    import os
    import signal

    from groklab.engine.step import Engine

    real = Engine.step

    def step_and_signal(self):
        out = real(self)
        if self.steps_taken == steps:
            os.kill(os.getpid(), signal.SIGINT if signum is None else signum)
        return out

    monkeypatch.setattr(Engine, "step", step_and_signal)


def stop_after(monkeypatch, steps: int):
    """A StopRequest that is set once the engine has taken `steps` steps, as a Ctrl-C arriving during that
    step would set it (pass it to train_runs(stop=...))."""
    import signal

    from groklab.engine.step import Engine
    from groklab.training.interrupts import StopRequest

    stop = StopRequest()
    real = Engine.step

    def step_and_signal(self):
        out = real(self)
        if self.steps_taken == steps:
            stop.request(signal.SIGINT)
        return out

    monkeypatch.setattr(Engine, "step", step_and_signal)
    return stop


def hide(text: str, *folders: Path) -> str:
    """A message without the test's temporary folders (the ledger should not hold /tmp/pytest-of-...)."""
    for folder in folders:
        text = text.replace(str(folder), "…")
    return text


def run_cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `groklab ARGV`; argparse's own errors leave through SystemExit."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean_error(code: int, err: str) -> str:
    """A refusal as the CLI promises it: status 2, no traceback, and one `groklab[ CMD]: error: ...` message at the
    end (argparse prints its usage above it). Returns the message, from `groklab` on (it may run over several
    lines only where it echoes a value that holds a newline)."""
    assert code == 2, (code, err)
    assert "Traceback" not in err and '  File "' not in err, err
    lines = err.strip().split("\n")  # not splitlines(): a value may hold U+0085 or U+2028, which it splits at
    starts = [i for i, line in enumerate(lines) if re.match(r"groklab( [a-z]+)?: error: ", line)]
    assert len(starts) == 1, err
    if not is_usage_error(err):
        assert not any(line.startswith("groklab") for line in lines[: starts[0]]), err
    return "\n".join(lines[starts[0]:])


def is_usage_error(err: str) -> bool:
    return any(line.startswith("usage: groklab") for line in err.split("\n"))
