"""The command line as users type it: seed-report flags, bad inputs as one-line errors with exit 2; then fuzzed
command lines of `data`, `train`, `sample` and `evaluate` (each kind of case adds a row to docs/reliability.md)."""

import json
import os
import pickle
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import UnionType
from typing import Literal, Union, get_args, get_origin

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from groklab.cli import main
from groklab.config import field_info
from helpers import FAST, assert_clean_error, hide, is_usage_error, run_cli, same_tensors

TINY = ["--n_layer", "1", "--n_head", "2", "--n_embd", "16", "--batch_size", "8", "--eval_points_per_decade", "2",
        "--no-progress", "--no-plot", "--device", "cpu"]  # CPU tests, on any machine


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


# =========================================================================================================
# fuzzed command lines
# =========================================================================================================


def tally_refusal(code: int, err: str, counts: Counter, example: list[str], *folders: Path) -> None:
    """A fuzzed command line that was refused: check it is clean, count it as argparse's usage error or
    groklab's own, and keep groklab's message as the ledger's example."""
    line = assert_clean_error(code, err)
    usage = is_usage_error(err)
    counts["argparse" if usage else "groklab"] += 1
    if not usage:
        example[:] = [hide(line, *folders)]


# a NUL byte cannot be passed in a real argv, so none is generated
junk_text = st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=6)
argv_values = st.sampled_from(["7", "0", "-1", "nan", "inf", "abc", "", "٣", str(2**70), "+", "true"]) | junk_text


def values(good: list[str], bad: list[str]) -> st.SearchStrategy[str]:
    """Flag values: half from `good` (plausible), the rest hostile: `bad` ones and random text."""
    return st.one_of(st.sampled_from(good), st.sampled_from(good), st.sampled_from(bad), junk_text)


INTS = values(["1", "2", "3"], ["0", "-1", str(2**70), "1e3", "3.5", "٣", "abc", ""])
FLOATS = values(["0.1", "0.5", "1e-3"], ["0", "-1", "nan", "inf", "-inf", "2", "abc", ""])


def config_flag(name: str) -> tuple[str, st.SearchStrategy[str] | None]:
    """--FIELD and a strategy for its value, from the field's type (None: the flag takes no value)."""
    if name.startswith("--no"):
        return name, None
    _, canonical, tp = field_info(name.lstrip("-"))
    args = [a for a in get_args(tp) if a is not type(None)] if get_origin(tp) in (Union, UnionType) else [tp]
    tp = args[0]
    if tp is bool:
        return name, values(["true", "false", "no"], ["maybe", ""])
    if get_origin(tp) is Literal:
        return name, values(list(get_args(tp)), ["bogus", "", "CPU"])
    if tp is int:
        return name, INTS
    if tp is float:
        return name, FLOATS
    if canonical == "operators":
        return name, values(["+", "/", "+,-"], ["^", "", ",", "div,div"])
    return name, values(["nowhere"], [".", "", "/"])  # data_dir, text_file


CONFIG_FLAGS = [config_flag(f) for f in [
    "--n_layer", "--n_head", "--n_embd", "--block_size", "--dropout", "--operators", "--prime", "--num_samples",
    "--train_fraction", "--val_fraction", "--data_seed", "--tokenizer", "--loss_on", "--mask_first_n",
    "--learning_rate", "--weight_decay", "--beta1", "--eps", "--grad_clip", "--warmup_steps", "--max_steps",
    "--batch_size", "--seed", "--eval_points_per_decade", "--checkpoint_interval", "--grok_threshold", "--device",
    "--data_dir", "--text_file", "--progress", "--max_iters", "--beta_1", "--p", "--lr", "--no-progress"]] + [
    ("--nonsense", argv_values)]


def flag_args(flags: list[tuple[str, st.SearchStrategy[str] | None]], max_size: int) -> st.SearchStrategy[list[str]]:
    """Up to max_size flags (with values where they take one), flattened into argv words."""
    one = st.sampled_from(flags).flatmap(
        lambda fv: st.just([fv[0]]) if fv[1] is None else fv[1].map(lambda v, f=fv[0]: [f, v]))
    return st.lists(one, max_size=max_size).map(lambda parts: [w for part in parts for w in part])


DATA_FLAGS = [
    ("--seed", values(["0", "1", "-1", str(2**70)], ["x", "1.5"])),
    ("--num_samples", values(["5", "10", "20"], ["0", "-1", "100000", "abc"])),
    ("--fractions", values(["0.7,0.15,0.15", "0.5,0.3,0.2", "1,0,0"],
                           ["nan,0,1", "0.5,0.5", "", "a,b,c", "0,0.5,0.5", "1e-300,1,0", "inf,-inf,1"])),
    ("--bogus", argv_values),
]


def test_fuzzed_data_command_lines(tmp_path, capsys, reliability):
    counts: Counter[str] = Counter()
    example: list[str] = []
    n = [0]

    @settings(max_examples=60, **FAST)
    @given(values(["+", "/", "+,-", "add", "mul", "#"], ["div,div", "^", ",", "", "٣"]),
           values(["7", "13", "11", "97"], ["2", "1", "0", "-1", "96", "abc", "٣", "3.5", "", str(10**18 + 9)]),
           flag_args(DATA_FLAGS, 2), st.sets(st.sampled_from(["--op", "--p", "--out"]), max_size=1))
    def check(op, p, extra, left_out):
        n[0] += 1
        out = tmp_path / f"d{n[0]}"
        required = {"--op": op, "--p": p, "--out": str(out)}
        argv = ["data", *[x for f, v in required.items() if f not in left_out for x in (f, v)], *extra]
        code, _, err = run_cli(capsys, argv)
        if code == 0:
            assert (out / "manifest.json").exists()
            counts["written"] += 1
            return
        tally_refusal(code, err, counts, example, tmp_path)

    check()
    assert counts["written"] and counts["groklab"] and counts["argparse"]
    reliability("command line", f"{n[0]} fuzzed `groklab data` command lines (ops, p, fractions, seeds and sample "
                "counts: plausible, or nan, inf, '٣', 2^70, empty, unknown ops, random text; required flags left "
                f"out)", f"{counts['written']} wrote a dataset; {counts['argparse']} usage errors and "
                f"{counts['groklab']} one-line errors, all exit 2, no traceback, e.g. {example[0]!r}")


def test_fuzzed_train_command_lines_are_checked_before_training(tmp_path, capsys, monkeypatch, reliability):
    """Random flags and values for `groklab train`. Training itself is replaced by loading each run's data, so
    everything up to the first step is exercised; the named cases below train for real."""
    import groklab.training.groups
    from groklab.data.dataset import load_run_data

    def train_many(configs, **_):
        for c in configs:
            load_run_data(c.data, c.model)
        return []

    monkeypatch.setattr(groklab.training.groups, "train_many", train_many)
    counts: Counter[str] = Counter()
    example: list[str] = []
    n = [0]
    base = ["--operators", "+", "--prime", "7", "--max_steps", "2"]

    @settings(max_examples=100, **FAST)
    @given(flag_args(CONFIG_FLAGS, 3), st.booleans())
    def check(flags, with_base):
        n[0] += 1
        argv = ["train", *(base if with_base else []), *flags, "--out_dir", str(tmp_path / f"r{n[0]}")]
        code, _, err = run_cli(capsys, argv)
        if code == 0:
            counts["accepted"] += 1
            return
        tally_refusal(code, err, counts, example, tmp_path)

    check()
    assert counts["accepted"] and counts["groklab"] and counts["argparse"]
    reliability("command line", f"{n[0]} fuzzed `groklab train` command lines (random config flags and aliases, "
                "values by type: plausible, 0, -1, nan, inf, 2^70, '٣', random text; data loaded, training stubbed)",
                f"{counts['accepted']} accepted; {counts['argparse']} usage errors and {counts['groklab']} one-line "
                f"errors naming the field, all exit 2, e.g. {example[0]!r}")


TINY_3_STEPS = [*TINY, "--max_steps", "3"]


@pytest.mark.parametrize("name, flags, message", [
    ("--seed 2^70 (beyond torch's 64-bit seeds)", ["--operators", "+", "--prime", "7", "--seed", str(2**70)],
     "seed: must fit in 64 bits"),
    ("--prime 2 (4 equations: the val split would be empty)", ["--operators", "+", "--prime", "2"],
     "val split is empty"),
    ("--val_fraction 0", ["--operators", "+", "--prime", "7", "--val_fraction", "0"], "val split is empty"),
    ("--out_dir inside a regular file", ["--operators", "+", "--prime", "7", "--out_dir", "FILE/run"],
     "Not a directory: 'FILE/run'"),
    ("--operators / --prime 10^18+9", ["--operators", "/", "--prime", str(10**18 + 9)], "make over 10,000,000"),
])
def test_named_bad_train_arguments(tmp_path, capsys, reliability, name, flags, message):
    (tmp_path / "file").write_text("not a folder")
    flags = [f.replace("FILE", str(tmp_path / "file")) for f in flags]
    out = [] if any(f.startswith("--out_dir") for f in flags) else ["--out_dir", str(tmp_path / "r")]
    t0 = time.perf_counter()
    code, _, err = run_cli(capsys, ["train", *flags, *out, *TINY_3_STEPS])
    line = assert_clean_error(code, err)
    assert message.replace("FILE", str(tmp_path / "file")) in line and time.perf_counter() - t0 < 10, line
    reliability("command line", f"`groklab train {name}`", f"exit 2: {hide(line, tmp_path)}")


def test_a_run_that_diverges_is_reported_not_a_traceback(tmp_path, capsys, reliability):
    code, _, err = run_cli(capsys, ["train", "--operators", "+", "--prime", "7", "--lr", "inf",
                                    "--out_dir", str(tmp_path / "inf"), *TINY_3_STEPS])
    assert code == 2 and "learning_rate: must be a finite number" in err and not (tmp_path / "inf").exists()
    code, out, err = run_cli(capsys, ["train", "--operators", "+", "--prime", "7", "--lr", "1e30",
                                      "--out_dir", str(tmp_path / "r"), *TINY_3_STEPS])
    assert code == 1 and "Traceback" not in err, err
    failure = json.loads((tmp_path / "r" / "failed.json").read_text())
    assert failure["status"] == "failed" and "failed" in (out + err)
    shown = next(line for line in (out + err).splitlines() if "failed" in line)
    reliability("command line", "`groklab train --lr 1e30` (the run goes non-finite)",
                f"exit 1, the failure printed: {hide(shown, tmp_path)}")


SAMPLE_FLAGS = [
    ("--split", values(["test", "val", "train", "val,test"], ["", "bogus", " test"])),
    ("--json", None),
    ("--device", values(["cpu"], ["gpu", "auto", ""])),
    ("--prompts", values(["1+2=", "3+4=,5+6="], ["1/2=", "x", "", ","])),
    ("--prompt", values(["1+2=", "6+6="], ["٣", "\n", ""])),
    ("--max_new_tokens", values(["0", "1", "3"], ["-1", "abc", "1.5"])),
    ("--temperature", values(["0", "0.5", "1"], ["nan", "-1", "inf", "1e-300", "abc"])),
    ("--top_k", values(["1", "3", "0"], ["-2", "abc"])),
    ("--seed", values(["0", "7", "-1"], [str(2**70), "abc"])),
]


def test_fuzzed_evaluate_and_sample_command_lines(tiny_runs, capsys, reliability):
    counts: Counter[str] = Counter()

    @settings(max_examples=40, **FAST)
    @given(st.sampled_from(["evaluate", "sample"]), st.sampled_from(["plus", "plus", "num", "missing"]),
           flag_args(SAMPLE_FLAGS, 3))
    def check(command, name, flags):
        argv = [command, str(tiny_runs / name), *flags]
        if command == "sample" and "--prompt" not in flags and "--prompts" not in flags:
            argv += ["--prompts", "1+2="]
        code, _, err = run_cli(capsys, argv)
        if code == 0:
            counts["ran"] += 1
            return
        assert_clean_error(code, err)
        counts["refused"] += 1

    check()
    assert counts["ran"] and counts["refused"]
    reliability("command line", f"{sum(counts.values())} fuzzed `groklab sample`/`evaluate` command lines (typed "
                "flags with plausible and hostile values, a missing run)", f"{counts['ran']} ran, "
                f"{counts['refused']} refused with exit 2 and no traceback")


def test_compile_on_a_machine_that_cannot_compile_trains_uncompiled_and_says_so(tmp_path, reliability):
    """--compile where inductor finds no working C++ compiler (CXX names one that fails): the run trains,
    bit for bit as without --compile, and its meta.json and console say why it ran uncompiled; before, the
    first step died with a traceback and exit 1, leaving a run folder that claimed "+ torch.compile"."""
    env = {**os.environ, "CXX": "/bin/false", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    args = ["--max_steps", "6", *TINY]
    failed = subprocess.run([sys.executable, "-m", "groklab", "run", "--compile", "--out_dir", str(tmp_path / "c"),
                             *args], capture_output=True, text=True, env=env, timeout=300)
    assert failed.returncode == 0, failed.stderr[-2000:]
    assert "Traceback" not in failed.stderr
    assert "torch.compile failed on this machine; training uncompiled (InductorError" in failed.stdout + failed.stderr
    engine = json.loads((tmp_path / "c" / "meta.json").read_text())["engine"]
    assert "torch.compile failed, ran uncompiled: InductorError" in engine and "+ torch.compile" not in engine
    assert main(["run", "--out_dir", str(tmp_path / "e"), *args]) == 0
    assert same_tensors(tmp_path / "c" / "model.safetensors", tmp_path / "e" / "model.safetensors")
    reliability("training run",
                "`groklab run --compile` where torch.compile finds no working C++ compiler (CXX=/bin/false)",
                f"exit {failed.returncode}, trained uncompiled; meta.json's engine: {engine!r}; final weights "
                "bit-identical to the same run without --compile")


def test_a_compiled_run_repeats_itself_bit_for_bit_in_another_process(tmp_path, reliability):
    """`--compile` twice, in two processes: the same weights, Adam state and evaluations. Inductor compiled the
    embedding's backward to atomic additions, whose order changes between processes, so two compiled runs
    (and a compiled run resumed after a kill) parted in their last digits; the compiled model now takes the
    embedding's gradient as a matrix product."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    # batch 256 of a 23 x 23 table: many tokens share each embedding row (a tiny batch rarely showed it)
    args = ["run", "--compile", "--prime", "23", "--operators", "+", "--max_steps", "100", "--n_layer", "1",
            "--n_embd", "32", "--batch_size", "256", "--no-progress", "--no-plot", "--device", "cpu"]
    for name in ("a", "b"):
        done = subprocess.run([sys.executable, "-m", "groklab", *args, "--out_dir", str(tmp_path / name)],
                              capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "+ torch.compile" in json.loads((tmp_path / name / "meta.json").read_text())["engine"]
    a, b = tmp_path / "a", tmp_path / "b"
    for name in ("model.safetensors", "state.safetensors"):
        assert same_tensors(a / name, b / name), name
    evals = [[{k: v for k, v in json.loads(line).items() if k != "elapsed_s"}
              for line in (d / "metrics.jsonl").read_text().splitlines()] for d in (a, b)]
    assert evals[0] == evals[1]
    reliability("training run", "`groklab run --compile` twice, in two processes",
                f"weights, Adam state and all {len(evals[0])} evaluations bit-identical")
