import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic():
    # catches nondeterministic kernels; tests compare runs bit for bit on the CPU
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)
    yield
    torch.use_deterministic_algorithms(False)
