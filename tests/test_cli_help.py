"""Each command's --help is true for that command: every flag listed once with its default said once (the
base that command starts from: train's defaults, the main job's for `run`, none for sweep and reproduce,
whose runs take their settings from the spec); the top-level help names every command; a misspelt flag,
command or choice gets "did you mean" in one error line with exit status 2."""

import argparse
import re

import pytest

from groklab.cli import COMMANDS, build_parser
from groklab.cli_args import default_text
from groklab.config import RunConfig, field_info
from groklab.presets import main_job_config
from helpers import assert_clean_error, run_cli

BASES = {"train": RunConfig(), "run": main_job_config(), "sweep": None, "reproduce": None}


def commands() -> dict[str, argparse.ArgumentParser]:
    [sub] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def listed(help_text: str) -> list[str]:
    """Every flag spelling in the invocation column of a help text (`  --max_steps, --max_iters INT  ...`)."""
    out = []
    for line in help_text.splitlines():
        m = re.match(r"  (-{1,2}\w[\w-]*(?:, -{1,2}\w[\w-]*)*)", line)
        if m:
            out += m.group(1).split(", ")
    return out


def config_value(base: RunConfig, dest: str):
    section, name, _ = field_info(dest)
    return getattr(getattr(base, section), name)


@pytest.mark.parametrize("name", [name for name, _, _ in COMMANDS])
def test_every_flag_is_listed_once_with_its_default_said_once(name):
    parser = commands()[name]
    text = parser.format_help()
    flags = listed(text)
    assert len(flags) == len(set(flags)), [f for f in flags if flags.count(f) > 1]
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or not action.option_strings or action.dest == "help":
            continue
        shown = action.shown
        assert all(flags.count(s) == 1 for s in shown), (name, shown)
        assert all(s in action.option_strings for s in shown)
        assert set(action.option_strings) - set(shown) <= {s.replace("_", "-") for s in shown}, action
        said = action.help.count("(default")
        assert said <= 1, (name, action.help)
        if action.default is argparse.SUPPRESS and not isinstance(action, argparse._StoreConstAction):  # config
            base = BASES[name]
            value = None if base is None else config_value(base, action.dest)
            if base is None:  # sweep, reproduce: the spec says, not train's defaults
                assert said == 0, (name, action.help)
            elif value not in (None, "") and value == config_value(RunConfig(), action.dest) \
                    and "default_text" in _metadata(action.dest):
                assert said == 1
            elif value not in (None, ""):
                assert f"(default: {default_text(value)})" in action.help, (name, action.dest, action.help)
    assert f"usage: groklab {name}" in text and len(text.split("\n\n")[0].splitlines()) == 1  # a one-line usage


def _metadata(dest: str) -> dict:
    import dataclasses

    from groklab.config import SECTION_CLASSES

    section, name, _ = field_info(dest)
    return dict(next(f for f in dataclasses.fields(SECTION_CLASSES[section]) if f.name == name).metadata)


def test_defaults_shown_are_the_ones_that_apply():
    helps = {name: p.format_help() for name, p in commands().items()}
    wd = {name: re.search(r"--weight_decay, --wd X\s+(.*?)\n  -", text, re.S).group(1) for name, text in helps.items()
          if name in BASES}
    assert "(default: 0.1)" in wd["train"] and "(default: 1)" in wd["run"]  # the main job's weight decay
    assert "default" not in wd["sweep"] and "default" not in wd["reproduce"]
    assert "override the spec's settings for every run" in helps["sweep"]
    # a default that depends on another setting is said once, in words
    fraction = re.search(r"--train_fraction X\s+(.*?)\n  -", helps["train"], re.S).group(1)
    assert " ".join(fraction.split()) == "on-the-fly data: train share (default: 0.7, or 0.4 with num_samples)"
    assert "--seeds" in helps["run"] and "--seeds" in helps["train"]
    assert "-q, --quiet" in helps["train"] and "-v, --verbose" in helps["sweep"]


def test_the_top_level_help_names_every_command():
    parser = build_parser()
    text = parser.format_help()
    for name, _, _ in COMMANDS:
        assert name in parser.description and re.search(rf"^    {name}\b", text, re.M), name
    assert set(commands()) == {name for name, _, _ in COMMANDS}


@pytest.mark.parametrize("argv, message", [
    (["train", "--n_layr", "2"], "unrecognized arguments: --n_layr (did you mean --n_layer?)"),
    (["sweep", "s.toml", "--out", "o", "--lerning_rate", "1"], "(did you mean --learning_rate?)"),
    (["sample", "RUN", "--temprature", "0"], "(did you mean --temperature?)"),
    (["trian"], "invalid choice: 'trian'"),
    (["train", "--tokenizer", "nubmer"], "did you mean 'number'?"),
    (["data", "--op", "+", "--p", "7"], "the following arguments are required: --out"),
])
def test_a_misspelling_gets_a_suggestion_in_one_error_line(capsys, argv, message):
    code, _, err = run_cli(capsys, argv)
    line = assert_clean_error(code, err)
    assert message in line and len(line.splitlines()) == 1, err
    assert len(err.strip().splitlines()) == 2 and err.startswith("usage: groklab")  # usage, then the error
    if argv[0] == "trian":
        assert "did you mean 'train'?" in line


def test_every_spelling_still_parses():
    parse = build_parser().parse_args
    d = parse(["data", "--operators", "+", "--prime", "7", "--out_dir", "x", "--num-samples", "5"])
    assert (d.op, d.p, d.out, d.num_samples) == ("+", 7, "x", 5)
    s = parse(["sample", "RUN", "--steps", "3", "--top-k", "2", "--prompts", "1+1=", "2+2=", "--interactive"])
    assert (s.max_new_tokens, s.top_k, s.prompts, s.interactive) == (3, 2, ["1+1=", "2+2="], True)
    e = parse(["evaluate", "--json", "RUN", "--split", "val"])  # a switch before the positional, as before
    assert (e.run, e.json, e.split) == ("RUN", True, "val")
    w = parse(["sweep", "s.toml", "--out-dir", "o", "--retry-failed", "--max-group", "2", "--wd", "1", "-q"])
    assert (w.out, w.retry_failed, w.max_group, w.weight_decay, w.verbosity) == ("o", True, 2, 1.0, "quiet")
    t = parse(["train", "x.txt", "--no-plot", "--compile", "--max_iters", "9", "-v", "--seeds", "1,2"])
    assert (t.path, t.plot, t.compile, t.max_steps, t.verbosity, t.seeds) == ("x.txt", False, True, 9, "verbose",
                                                                             "1,2")
    r = parse(["report", "--open", "DIR"])
    assert (r.dir, r.open) == ("DIR", True)
    x = parse(["export", "RUN", "--format", "module", "--out", "o"])
    assert (x.run, x.format, x.out) == ("RUN", "module", "o")
