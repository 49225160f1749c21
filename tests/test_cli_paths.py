"""Output paths that cannot be folders: a symbolic link to nothing, or to itself, is refused in one line
naming it, before anything is written."""

import pytest

from helpers import assert_clean_error, hide, run_cli

TRAIN = ["--operators", "+", "--prime", "7", "--n_layer", "1", "--n_head", "2", "--n_embd", "16", "--max_steps", "3",
         "--no_plot", "--device", "cpu", "-q"]


@pytest.mark.parametrize("kind", ["loop", "dangling", "loop above"])
@pytest.mark.parametrize("argv", [["train", *TRAIN, "--out_dir"], ["data", "--op", "+", "--p", "7", "--out"]])
def test_an_output_path_through_a_broken_link_is_refused_naming_it(tmp_path, capsys, reliability, kind, argv):
    link = tmp_path / "link"
    link.symlink_to(link if kind != "dangling" else tmp_path / "nowhere")
    out = link / "sub" if kind == "loop above" else link
    code, _, err = run_cli(capsys, [*argv, str(out)])
    message = assert_clean_error(code, err)
    assert str(link) in message and ("points to itself" if "loop" in kind else "dangling symbolic link") in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link"]
    reliability("output folder", f"{argv[0]}: the output path is a {kind} symbolic link", hide(message, tmp_path))
