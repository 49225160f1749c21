"""The seeds' own command lines, as the README prints them: seed 000's sanity checks (a text folder made by
`groklab data --text`) and its inference spelling (`sample --checkpoint`), and seed 003's `train . --prime 97
--operators "/"` (its 5,000 random equations, split 40/40/20). Steps are cut short; everything else is verbatim."""

import json

import pytest

from groklab.cli import main
from groklab.data.textset import MANIFEST_FILE, TEXT_FILE

SANITY = ["--n_layer", "1", "--n_embd", "32", "--n_head", "4", "--max_steps", "1000", "--log_interval", "100",
          "--batch_size", "64", "--learning_rate", "3e-4", "--seed", "42", "--eval_points_per_decade", "16"]


def _short(args, steps="60"):
    args = list(args)
    flag = "--max_steps" if "--max_steps" in args else "--max_iters"
    args[args.index(flag) + 1] = steps
    return args + ["--no-plot"]


def test_seed000_sanity_checks_run_as_printed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["data", "--text", "I love machine learning", "--out", "data/sanity_check"]) == 0
    assert (tmp_path / "data/sanity_check" / TEXT_FILE).read_text() == "I love machine learning"
    assert json.loads((tmp_path / "data/sanity_check" / MANIFEST_FILE).read_text())["format"] == "groklab-text/1"
    assert main(["data", "--text", "I love machine learning", "--out", "data/sanity_check"]) == 0  # again: no-op
    capsys.readouterr()
    plain = ["train", "--data_dir", "data/sanity_check", "--out_dir", "out/sanity_check", *_short(SANITY)]
    masked = ["train", "--data_dir", "data/sanity_check", "--out_dir", "out/sanity_check_masked", *_short(SANITY),
              "--mask_first_n", "3"]
    for command in (plain, masked):
        assert main(command) == 0
        out = capsys.readouterr().out
        assert "memorising a text" in out and "grok" not in out.splitlines()[-1]  # a text run: no verdict
    for run in ("out/sanity_check", "out/sanity_check_masked"):
        summary = json.loads((tmp_path / run / "summary.json").read_text())
        assert summary["task"] == "text" and summary["steps_to_grok"] is None
        assert (tmp_path / run / "data" / TEXT_FILE).read_text() == "I love machine learning"
    config = json.loads((tmp_path / "out/sanity_check_masked/config.json").read_text())["config"]["data"]
    assert config["text_file"] == "data/sanity_check/text.txt" and config["mask_first_n"] == 3
    # seed 000's inference spelling works on it too (a file inside the run directory, as the report wrote it)
    assert main(["sample", "--checkpoint", "out/sanity_check/final_model.pt", "--prompts", "I",
                 "--max_new_tokens", "2", "--temperature", "0"]) == 0
    assert capsys.readouterr().out.startswith("I")


def test_a_text_folder_is_read_strictly(tmp_path, capsys):
    folder = tmp_path / "t"
    assert main(["data", "--text", "abcabd", "--out", str(folder)]) == 0
    train = ["train", "--data_dir", str(folder), "--out_dir", str(tmp_path / "run"), "--max_steps", "2",
             "--n_layer", "1", "--n_embd", "8", "--n_head", "2", "--no-plot"]
    (folder / TEXT_FILE).write_text("abcabe")
    assert main(train) == 2
    assert "text.txt: does not match" in capsys.readouterr().err
    (folder / TEXT_FILE).write_text("abcabd")
    assert main([*train, "--tokenizer", "number"]) == 2
    assert "needs the char tokenizer" in capsys.readouterr().err
    (folder / "train.txt").write_text("1+1=2\n")
    assert main(train) == 2
    assert "holds both text.txt and equation files" in capsys.readouterr().err
    (folder / "train.txt").unlink()
    (folder / MANIFEST_FILE).write_text('{"format": "groklab-text/1"}')
    assert main(train) == 2
    assert "not a groklab text manifest" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before anything was written
    # groklab data --text refuses what a text folder cannot hold, and a folder that is not its own
    assert main(["data", "--text", "", "--out", str(tmp_path / "e")]) == 2
    assert main(["data", "--text", "other", "--out", str(folder)]) == 2
    assert main(["data", "--text", "x", "--op", "+", "--out", str(tmp_path / "f")]) == 2
    assert main(["data", "--out", str(tmp_path / "g")]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert all(line.startswith("groklab: error: ") for line in errors) and len(errors) == 4


def test_an_equation_folder_with_a_text_beside_it_stays_an_equation_folder(tmp_path):
    from groklab.data.textset import is_text_folder

    assert main(["data", "--op", "+", "--p", "5", "--out", str(tmp_path / "eq")]) == 0
    (tmp_path / "eq" / TEXT_FILE).write_text("notes")
    assert not is_text_folder(tmp_path / "eq")


def test_seed003_folder_and_operators_build_its_data(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    base = ["train", ".", "--prime", "97", "--operators", "/", "--n_layer", "2", "--max_iters", "10000",
            "--eval_interval", "100", "--batch_size", "32", "--device", "cpu"]
    assert main([*_short(base, "2"), "--out_dir", "out/s3", "--n_embd", "16"]) == 0
    err = capsys.readouterr().err
    assert err.count("seed 003's spelling") == 1 and "5,000 random equations (division mod 97), split 40%/40%/20%" in err
    manifest = json.loads((tmp_path / "out/s3/data/manifest.json").read_text())
    assert manifest["counts"] == {"train": 2000, "val": 2000, "test": 1000} and manifest["scheme"] == "sample"
    # flags say otherwise
    assert main([*_short(base, "2"), "--out_dir", "out/s3b", "--n_embd", "16", "--num_samples", "1000",
                 "--train_fraction", "0.5", "--val_fraction", "0.3"]) == 0
    assert "1,000 random equations (division mod 97), split 50%/30%/20%" in capsys.readouterr().err
    assert json.loads((tmp_path / "out/s3b/data/manifest.json").read_text())["counts"] == \
        {"train": 500, "val": 300, "test": 200}
    # fewer equations than 5,000: all of them, drawn as a sample
    assert main(["train", ".", "--prime", "11", "--operators", "+", "--max_steps", "1", "--n_layer", "1",
                 "--n_embd", "8", "--n_head", "2", "--out_dir", "out/small", "--no-plot"]) == 0
    assert "121 random equations" in capsys.readouterr().err


@pytest.mark.parametrize("given", [[], ["out/x", "--checkpoint", "out/x"]])
def test_sample_needs_the_run_once(given, capsys):
    assert main(["sample", *given, "--prompts", "1+1="]) == 2
    assert "--checkpoint PATH" in capsys.readouterr().err
