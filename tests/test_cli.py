"""The command line as users type it: seed-report flags, bad inputs as one-line errors with exit 2."""

import json
import pickle
import subprocess
import sys

import pytest

from groklab.cli import main

TINY = ["--n_layer", "1", "--n_head", "2", "--n_embd", "16", "--batch_size", "8", "--eval_points_per_decade", "2",
        "--no-progress", "--no-plot"]


def _err(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, err


@pytest.fixture(scope="module")
def d97(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "div97"
    assert main(["data", "--op", "/", "--p", "97", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory, d97):
    out = tmp_path_factory.mktemp("runs") / "div"
    assert main(["train", "--data_dir", str(d97), "--out_dir", str(out), "--max_steps", "5", *TINY]) == 0
    return out


def test_data_prints_seed_table(capsys, tmp_path):
    assert main(["data", "--op", "+,-", "--p", "97", "--out", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert "| Addition+Subtraction | 97 " in out.replace("  ", " ") or "Addition" in out
    assert "18,818" in out
    manifest = json.loads((tmp_path / "d/manifest.json").read_text())
    assert manifest["counts"] == {"train": 13172, "val": 2822, "test": 2824}


def test_seed_000_division_counts(d97):
    manifest = json.loads((d97 / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 6518, "val": 1396, "test": 1398}


@pytest.mark.parametrize("argv, message", [
    (["data", "--op", "/", "--p", "96", "--out", "X"], "not prime"),
    (["data", "--op", "+", "--p", "1", "--out", "X"], "at least 2"),
    (["data", "--op", "^", "--p", "7", "--out", "X"], "unknown operation"),
    (["data", "--op", "+", "--p", "7", "--fractions", "0.5,0.5,0.5", "--out", "X"], "sum"),
    (["train", "--n_embd", "30", "--n_head", "4", "--prime", "7", "--operators", "+"], "n_embd"),
    (["train", "--max_steps", "10"], "no data"),
    (["train", "--prime", "7"], "go together"),
    (["sample", "does/not/exist", "--prompts", "1+1="], "no such run"),
])
def test_bad_input_is_one_line_exit_2(capsys, tmp_path, argv, message):
    argv = [a.replace("X", str(tmp_path / "x")) for a in argv]
    code, err = _err(capsys, argv)
    assert code == 2
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_nonempty_output_dir_refused(capsys, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    code, err = _err(capsys, ["data", "--op", "+", "--p", "7", "--out", str(tmp_path / "x")])
    assert code == 2 and "already holds other files" in err


def test_malformed_data_file_names_file_and_line(capsys, tmp_path, d97):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.txt").write_text("1+1=2\n2+2=4\n3+3=six\n")
    (bad / "val.txt").write_text("1+2=3\n")
    code, err = _err(capsys, ["train", "--data_dir", str(bad), "--out_dir", str(tmp_path / "r"), *TINY])
    assert code == 2
    assert f"{bad / 'train.txt'}:3" in err and "Traceback" not in err


def test_seed_000_flags_verbatim(tmp_path, d97):
    argv = ["train", "--data_dir", str(d97), "--out_dir", str(tmp_path / "r"), "--n_layer", "1", "--n_embd", "32",
            "--n_head", "4", "--max_steps", "3", "--log_interval", "1", "--batch_size", "64", "--learning_rate",
            "3e-4", "--seed", "42", "--eval_points_per_decade", "16", "--mask_first_n", "3", "--weight_decay", "1.0",
            "--beta1", "0.9", "--beta2", "0.98", "--device", "cpu", "--no-progress"]
    assert main(argv) == 0
    cfg = json.loads((tmp_path / "r/config.json").read_text())["config"]
    assert cfg["data"]["mask_first_n"] == 3 and cfg["optim"]["beta2"] == 0.98 and cfg["model"]["n_embd"] == 32


def test_seed_003_flags_and_dashed_forms(tmp_path):
    argv = ["train", ".", "--prime", "97", "--operators", "/", "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
            "--max_iters", "4", "--eval_interval", "2", "--batch-size", "32", "--device", "cpu",
            "--out_dir", str(tmp_path / "r"), "--no-progress", "--no-plot"]
    assert main(argv) == 0
    rows = [json.loads(x) for x in (tmp_path / "r/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows][-2:] == [3, 4] or 2 in [r["step"] for r in rows]


def test_sample_and_evaluate(capsys, trained):
    assert main(["sample", str(trained), "--prompts", "30/74=", "--max_new_tokens", "2", "--temperature", "0"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("30/74=") and len(out) <= len("30/74=") + 2
    assert main(["evaluate", str(trained), "--split", "test", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["examples"] == 1398 and 0 <= r["accuracy"] <= 1


def test_sample_rejects_out_of_vocabulary_prompt(capsys, trained):
    code, err = _err(capsys, ["sample", str(trained), "--prompts", "3x4="])
    assert code == 2 and "'x'" in err


def test_pickled_checkpoint_is_refused(capsys, tmp_path, trained, reliability):
    import shutil

    run = tmp_path / "evil"
    shutil.copytree(trained, run)
    marker = tmp_path / "pwned"

    class Boom:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (run / "model.safetensors").write_bytes(pickle.dumps({"wte": Boom()}))
    code, err = _err(capsys, ["sample", str(run), "--prompts", "1/1="])
    assert code == 2 and "not a readable safetensors file" in err
    assert not marker.exists()
    reliability("safe loading", "a crafted pickle (its __reduce__ writes a file) placed as model.safetensors, "
                "`groklab sample`", err.strip().replace(str(tmp_path), "…")[:150]
                + f" · payload executed: {marker.exists()}")


def test_truncated_checkpoint_is_refused(capsys, tmp_path, trained):
    import shutil

    run = tmp_path / "torn"
    shutil.copytree(trained, run)
    raw = (run / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes(raw[: len(raw) // 2])
    code, err = _err(capsys, ["evaluate", str(run)])
    assert code == 2 and "truncated" in err


def test_console_script_module_entry():
    r = subprocess.run([sys.executable, "-m", "groklab", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and "groklab" in r.stdout
