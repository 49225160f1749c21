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
