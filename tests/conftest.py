import pytest
import torch

import reliability as ledger


@pytest.fixture(autouse=True)
def _deterministic():
    # catches nondeterministic kernels; tests compare runs bit for bit on the CPU
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)
    yield
    torch.use_deterministic_algorithms(False)


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    """Three tiny trained runs for the fuzz tests of sampling, loading and the CLI: 'plus' (char, from a data
    folder, '+' mod 7, 13 tokens), 'div' (char, on the fly, '/' mod 7, also 13 tokens: trained in the same
    group) and 'num' (number tokenizer, '+' mod 7, 10 tokens). Tests copy a run before changing it."""
    from groklab.data.equations import DatasetSpec, make_splits, write_dataset
    from groklab.training.loop import train_runs
    from helpers import tiny_config

    root = tmp_path_factory.mktemp("fuzz-runs")
    spec = DatasetSpec("+", 7, fractions=(0.6, 0.2, 0.2))
    write_dataset(spec, make_splits(spec), root / "plus7")
    plus = tiny_config(root / "plus", operators=None, prime=None, train_fraction=None, val_fraction=None,
                       data_dir=str(root / "plus7"), max_steps=3)
    div = tiny_config(root / "div", operators="/", max_steps=3)
    num = tiny_config(root / "num", tokenizer="number", max_steps=3)
    train_runs([plus, div], log=lambda _: None)
    train_runs([num], log=lambda _: None)
    return root


@pytest.fixture
def reliability(request):
    """reliability(area, fault, outcome): add a row to docs/reliability.md (see tests/reliability.py)."""
    test = request.node.nodeid.split("::", 1)[-1]

    def record(area: str, fault: str, outcome: str) -> None:
        ledger.ENTRIES.append(ledger.Entry(area, fault, str(outcome), test))

    return record


def pytest_sessionfinish(session, exitstatus):
    # only when asked (`make ledger`: GROKLAB_LEDGER=1), so that `make test` leaves the tracked docs alone, and
    # only from a complete, passing run of the whole suite (a -k subset would shrink it)
    import os

    if os.environ.get("GROKLAB_LEDGER") != "1":
        return
    cfg = session.config
    whole = not cfg.option.keyword and not cfg.option.markexpr and not cfg.args[1:] and \
        all(a.rstrip("/").endswith("tests") for a in cfg.args)
    if exitstatus == 0 and whole and ledger.ENTRIES and not cfg.option.collectonly:
        ledger.write_doc()
