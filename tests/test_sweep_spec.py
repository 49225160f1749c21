"""Sweep specs (groklab.experiments.spec), fuzzed: generated TOML specs, random bytes, data paths that leave the
spec's folder, and named bad specs. Each is expanded into runs whose data stays inside the spec's folder, or
refused with a SpecError naming file and field (on the command line: one `groklab: error:` line, exit 2);
each kind of case adds a row to docs/reliability.md. Running sweeps is test_sweep.py's."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from groklab.config import RunConfig, field_info
from groklab.experiments.spec import MANAGED_FIELDS, PATH_FIELDS, SpecError, load_spec, parse_spec
from helpers import FAST, assert_clean_error, hide, run_cli


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    assert isinstance(v, dict)
    return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)} = {toml_value(x)}" for k, x in v.items()) + "}"


def toml_text(d: dict) -> str:
    return "".join(f"{json.dumps(k, ensure_ascii=False)} = {toml_value(v)}\n" for k, v in d.items())


FIELD_NAMES = ["op", "p", "operators", "prime", "seed", "lr", "weight_decay", "n_layer", "n_head", "n_embd",
               "max_steps", "tokenizer", "data_dir", "text_file", "dropout", "train_fraction", "num_samples",
               "out_dir", "resume", "n_layr", "", "block-size", "grok_threshold", "device"]
PATHS = ["data", "sub/dir", ".", "../outside", "/etc", "sub/../../x", "a\x00b", "~/x", "", "data/" + "d/" * 140]
spec_scalars = st.one_of(
    st.integers(1, 8), st.integers(-3, 8), st.integers(-(2**70), 2**70), st.floats(0, 1), st.floats(), st.booleans(),
    st.sampled_from(["+", "/", "+,-", "char", "number", "cpu", "x"]), st.sampled_from(PATHS), st.text(max_size=5),
)
spec_tables = st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=4), spec_scalars, max_size=4)
spec_axes = st.dictionaries(st.sampled_from(FIELD_NAMES), st.lists(spec_scalars, max_size=3) | spec_scalars,
                            max_size=3)
spec_names = st.sampled_from(["tiny", "a.b-c_1", "bad name", "x\n", "", "..", "-x", "é"]) | st.text(max_size=4)
experiments = st.fixed_dictionaries({}, optional={"name": spec_names, "base": spec_tables, "grid": spec_axes,
                                                  "zip": spec_axes, "description": spec_scalars, "junk": spec_scalars})
plausible_specs = st.fixed_dictionaries({}, optional={
    "name": st.sampled_from(["tiny", "a.b-c_1"]), "base": spec_tables, "grid": spec_axes, "zip": spec_axes,
})
wild_specs = st.fixed_dictionaries({}, optional={
    "name": spec_names, "description": spec_scalars, "base": spec_tables | spec_scalars, "grid": spec_axes,
    "zip": spec_axes, "experiment": st.lists(experiments | spec_scalars, max_size=2) | spec_scalars,
    "runs": spec_scalars,
})
specs = plausible_specs | wild_specs | st.fixed_dictionaries({"experiment": st.lists(experiments, min_size=1,
                                                                                     max_size=2)})


def test_generated_sweep_specs_expand_inside_their_folder_or_name_the_field(tmp_path, reliability):
    root = tmp_path / "specs"
    (root / "data").mkdir(parents=True)
    counts: Counter[str] = Counter()
    example: list[str] = []

    @settings(max_examples=300, **FAST)
    @given(specs, st.dictionaries(st.sampled_from(FIELD_NAMES), spec_scalars, max_size=2))
    def check(spec, overrides):
        text = toml_text(spec)
        try:
            runs = parse_spec(text, "spec.toml", root).expand(overrides)
        except SpecError as exc:
            message = str(exc)
            assert message.startswith("spec.toml: ") and "Traceback" not in message
            counts["refused"] += 1
            example[:] = [hide(message, tmp_path)]
            return
        assert len({r.run_id for r in runs}) == len(runs)
        for r in runs:
            parts = r.run_id.split("/")
            assert len(parts) == 2 and all(0 < len(x.encode()) <= 255 and x not in (".", "..") for x in parts)
            for name in PATH_FIELDS:
                value = getattr(r.config.data, name)
                if value is not None and name not in overrides:
                    assert Path(value).resolve().is_relative_to(root.resolve()), value
            assert r.config.train.out_dir == RunConfig().train.out_dir  # set by the sweep, not by the spec
        counts["expanded"] += 1
        counts["runs"] += len(runs)

    check()
    assert counts["expanded"] and counts["refused"]
    reliability("sweep spec", f"{counts['expanded'] + counts['refused']} generated specs: random fields, aliases, "
                "typos, paths ('../', '/etc', NUL, 285 characters), lists, tables, experiments, names, CLI overrides",
                f"{counts['expanded']} expanded ({counts['runs']} runs, every data path inside the spec's folder, "
                f"folder names ≤ 255 bytes); {counts['refused']} refused naming file and field, e.g. {example[0]!r}")


def test_random_spec_bytes_are_refused_as_spec_errors(tmp_path, reliability):
    counts: Counter[str] = Counter()

    @settings(max_examples=150, **FAST)
    @given(st.binary(max_size=60) | st.text(max_size=60).map(str.encode))
    def check(raw):
        path = tmp_path / "s.toml"
        path.write_bytes(raw)
        try:
            load_spec(path).expand()
        except SpecError as exc:
            assert str(exc).startswith(str(path))
            counts["refused"] += 1
            return
        counts["expanded"] += 1  # e.g. an empty or comment-only file: one run of the default config

    check()
    reliability("sweep spec", f"{sum(counts.values())} spec files of random bytes or random text",
                f"{counts['refused']} refused with SpecError naming the file, {counts['expanded']} valid TOML that "
                "expanded (empty or comment-only)")


def test_a_spec_pointing_outside_its_folder_is_refused(tmp_path, capsys, reliability):
    root = tmp_path / "specs"
    (root / "data").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    (root / "escape").symlink_to(tmp_path / "secret")
    (root / "loop").symlink_to(root / "loop")
    cases = {
        "a parent path": '[base]\ndata_dir = "../secret"\n',
        "an absolute path": '[base]\ndata_dir = "/etc"\n',
        "a path that dips in and out": '[grid]\ndata_dir = ["data", "data/../../secret"]\n',
        "a symlink inside the folder to a folder outside": '[base]\ntext_file = "escape/notes.txt"\n',
        "a NUL byte in the path": '[base]\ndata_dir = "data\\u0000x"\n',
        "an outside path in one experiment": '[[experiment]]\nname = "a"\n[experiment.base]\ndata_dir = "data"\n'
                                             '[[experiment]]\nname = "b"\n[experiment.zip]\ndata_dir = ["../secret"]\n',
    }
    for name, body in cases.items():
        (root / "s.toml").write_text(body)
        with pytest.raises(SpecError) as err:
            load_spec(root / "s.toml").expand({"op": "+", "p": 7})
        message = str(err.value)
        assert message.startswith(str(root / "s.toml")) and ("outside the spec's folder" in message
                                                             or "not a usable path" in message), message
        reliability("sweep spec", f"a data path leaving the spec's folder: {name}", hide(message, tmp_path))
    # a symlink loop: Python 3.11/3.12 cannot resolve it (refused), 3.13 leaves it as is (inside: accepted)
    (root / "s.toml").write_text('[base]\ndata_dir = "loop/x"\n')
    try:
        data_dir = load_spec(root / "s.toml").expand({"op": "+", "p": 7})[0].config.data.data_dir
        outcome = f"accepted, inside the folder: {data_dir}"
        assert outcome.endswith(str((root / "loop" / "x")))
    except SpecError as exc:
        assert "not a usable path" in str(exc)
        outcome = str(exc)
    reliability("sweep spec", "a data path through a symlink loop inside the spec's folder", hide(outcome, tmp_path))
    (root / "s.toml").write_text(cases["a parent path"])
    code, _, err = run_cli(capsys, ["sweep", str(root / "s.toml"), "--out", str(tmp_path / "out")])
    line = assert_clean_error(code, err)
    assert "points outside the spec's folder" in line and not (tmp_path / "out").exists()
    reliability("sweep spec", "`groklab sweep` with a spec whose data_dir is '../secret'",
                f"exit 2 before anything ran: {hide(line, tmp_path)}")


@pytest.mark.parametrize("name, body, message", [
    ("a name ending in a newline", 'name = "tiny\\n"\n', "name must be letters"),
    ("[[experiment]] entries that are numbers", "experiment = [1, 2]\n",
     r"\[\[experiment\]\] must be a list of tables"),
    ("TOML nested 5,000 arrays deep", "x = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ("a grid value whose run folder name would exceed 255 bytes",
     '[base]\nop = "+"\np = 7\n[grid]\noperators = ["+", "+' + "," * 300 + '"]\n', "more than the 255"),
    ("a typo in a field, with a suggestion", '[grid]\nweight_decy = [0.1, 1.0]\n', "did you mean 'weight_decay'"),
    ("a managed field", "[base]\nout_dir = 'x'\n", "out_dir is set by the sweep"),
])
def test_named_bad_specs(tmp_path, reliability, name, body, message):
    (tmp_path / "s.toml").write_text(body)
    with pytest.raises(SpecError, match=message) as err:
        load_spec(tmp_path / "s.toml").expand()
    assert str(err.value).startswith(str(tmp_path / "s.toml"))
    reliability("sweep spec", name, hide(str(err.value), tmp_path))


def test_unreadable_spec_files(tmp_path, reliability):
    (tmp_path / "latin1.toml").write_bytes('name = "d\xe9j\xe0"\n'.encode("latin-1"))
    (tmp_path / "folder.toml").mkdir()
    for name, path, message in [("a spec in Latin-1 (not UTF-8)", tmp_path / "latin1.toml", "not UTF-8"),
                                ("a spec path that is a folder", tmp_path / "folder.toml", "is a directory"),
                                ("a spec that does not exist", tmp_path / "missing.toml", "no such file")]:
        with pytest.raises(SpecError, match=message) as err:
            load_spec(path)
        reliability("sweep spec", name, hide(str(err.value), tmp_path))


def test_every_config_field_in_a_spec_rejects_a_wrong_type(tmp_path, reliability):
    """A sweep spec can set any field; a value of the wrong type is a SpecError naming the field (not a crash
    when the run starts)."""
    refused = []
    for name in [f for f in FIELD_NAMES if f and f not in MANAGED_FIELDS and f != "n_layr" and f != "block-size"]:
        (tmp_path / "s.toml").write_text(f"[base]\n{name} = {{ nested = [1] }}\n")
        with pytest.raises(SpecError, match=rf"{field_info(name)[1]}: expected") as err:
            load_spec(tmp_path / "s.toml").expand()
        refused.append(field_info(name)[1])
    reliability("sweep spec", f"an inline table as the value of each of {len(refused)} config fields",
                f"every one refused naming the field, e.g. {hide(str(err.value), tmp_path)}")
