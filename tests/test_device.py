"""One device policy: --device takes 'auto' or any torch device string, and what this machine cannot provide is
one line, before anything is written."""

import pytest
import torch

from groklab.config import ConfigError
from groklab.engine.device import resolve_device
from groklab.errors import GroklabError
from helpers import assert_clean_error, run_cli, tiny_config


def test_auto_and_cpu_resolve():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "cuda:", "CPU", ""])
def test_a_device_torch_does_not_know_is_refused_by_the_config(tmp_path, name):
    with pytest.raises(ConfigError, match="device: 'auto' or a torch device"):
        tiny_config(tmp_path, device=name)


@pytest.mark.skipif(torch.cuda.device_count() > 1, reason="this machine has a cuda:1")
def test_a_device_this_machine_lacks_is_one_line_and_nothing_is_written(tmp_path, capsys):
    name = "cuda:1" if torch.cuda.is_available() else "cuda"
    with pytest.raises(GroklabError, match="device: --device cuda"):
        resolve_device(name)
    code, _, err = run_cli(capsys, ["train", "--operators", "+", "--prime", "7", "--max_steps", "2",
                                    "--device", name, "--out_dir", str(tmp_path / "r")])
    assert "device: --device cuda" in assert_clean_error(code, err) and not (tmp_path / "r").exists()


@pytest.mark.skipif(getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
                    reason="this machine has an Apple GPU")
def test_mps_without_an_apple_gpu_is_refused():
    with pytest.raises(GroklabError, match="no Apple GPU"):
        resolve_device("mps")
