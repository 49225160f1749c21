"""Equation datasets: the seeds' counts, splits, files + manifest, and errors that name file:line."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from groklab.data.equations import DatasetSpec, all_equations, make_splits, manifest_for, stats_table, write_dataset
from groklab.data.parse import check_equations, load_dataset_dir, parse_equation, read_equation_file, read_text_file
from groklab.errors import DataError


def counts(splits):
    return tuple(len(splits[s]) for s in ("train", "val", "test"))


# --- generation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ops, p, expected",
    [
        ("/", 97, (6518, 1396, 1398)),  # seed 000's table
        ("+", 97, (6586, 1411, 1412)),
        ("-", 97, (6586, 1411, 1412)),
        ("+", 113, (8938, 1915, 1916)),
        ("-", 113, (8938, 1915, 1916)),
    ],
)
def test_full_enumeration_reproduces_the_seed_report_counts(ops, p, expected):
    assert counts(make_splits(DatasetSpec((ops,), p))) == expected


def test_all_equations_counts_and_order():
    assert len(all_equations("/", 97)) == 97 * 96 == 9312
    assert len(all_equations("+", 97)) == 9409
    assert all_equations("+", 3) == ["0+0=0", "0+1=1", "0+2=2", "1+0=1", "1+1=2", "1+2=0", "2+0=2", "2+1=0", "2+2=1"]
    mixed = all_equations("-,+", 2)
    assert mixed == ["0-0=0", "0-1=1", "1-0=1", "1-1=0", "0+0=0", "0+1=1", "1+0=1", "1+1=0"]


def test_division_lines_satisfy_a_equals_b_times_c():
    lines = all_equations("/", 97)
    for line in lines:
        a, symbol, b, c = parse_equation(line)
        assert symbol == "/" and b != 0 and 0 <= c < 97
        assert a == (b * c) % 97
    assert "30/74=24" in lines


def test_splits_are_deterministic_for_a_seed_and_differ_across_seeds():
    a = make_splits(DatasetSpec(("/",), 23, seed=1))
    assert a == make_splits(DatasetSpec(("/",), 23, seed=1))
    assert a["train"] != make_splits(DatasetSpec(("/",), 23, seed=2))["train"]


@pytest.mark.parametrize("num_samples", [None, 5000])
def test_no_equation_is_shared_or_repeated_between_splits(num_samples):
    splits = make_splits(DatasetSpec(("+", "-"), 97, num_samples=num_samples, seed=3))
    everything = splits["train"] + splits["val"] + splits["test"]
    assert len(set(everything)) == len(everything)


def test_sampling_matches_seed_003_sizes_and_mixes_ops():
    splits = make_splits(DatasetSpec(("+", "-"), 97, num_samples=5000))
    assert counts(splits) == (2000, 2000, 1000)
    assert {parse_equation(line)[1] for line in splits["train"]} == {"+", "-"}
    assert set(splits["train"]) <= set(all_equations("+,-", 97))


def test_full_enumeration_of_mixed_ops_holds_both():
    splits = make_splits(DatasetSpec("+,-", 11))
    everything = splits["train"] + splits["val"] + splits["test"]
    assert sorted(everything) == sorted(all_equations("+,-", 11))
    assert len(everything) == 2 * 121


def test_too_many_samples_names_both_numbers():
    with pytest.raises(DataError, match=r"num_samples 9,313 is more than the 9,312 distinct equations"):
        make_splits(DatasetSpec(("/",), 97, num_samples=9313))


def test_spec_normalises_names_and_defaults_fractions():
    spec = DatasetSpec(("add", "sub"), 97)
    assert spec.ops == ("+", "-") and spec.resolved_fractions == (0.7, 0.15, 0.15)
    assert DatasetSpec("+", 97, num_samples=10).resolved_fractions == (0.4, 0.4, 0.2)
    assert DatasetSpec("+", 97, fractions=(0.5, 0.5, 0)).resolved_fractions == (0.5, 0.5, 0.0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(ops=("/",), p=96), r"division needs a prime modulus; 96 is not prime \(96 = 2 × 48\)"),
        (dict(ops=("+",), p=1), "p must be at least 2, got 1"),
        (dict(ops=("x",), p=97), r"unknown operation 'x'; choose from \+ \(add\)"),
        (dict(ops=("+", "add"), p=97), "given twice"),
        (dict(ops=(), p=97), "no operation given"),
        (dict(ops=("+",), p=97, fractions=(0.7, 0.2, 0.2)), "fractions must sum to 1"),
        (dict(ops=("+",), p=97, fractions=(0.5, 0.5)), "three numbers"),
        (dict(ops=("+",), p=97, fractions=(1.5, -0.5, 0.0)), r"train fraction must be in \[0, 1\]"),
        (dict(ops=("+",), p=97, fractions=(0.0, 0.5, 0.5)), "train fraction must be above 0"),
        (dict(ops=("+",), p=97, num_samples=0), "num_samples must be a positive integer"),
    ],
)
def test_spec_validation(kwargs, message):
    with pytest.raises(DataError, match=message):
        DatasetSpec(**kwargs)


def test_empty_train_split_is_refused():
    with pytest.raises(DataError, match="train split would be empty"):
        make_splits(DatasetSpec("+", 97, num_samples=1))


def test_stats_table_formats_like_the_seed_report():
    rows = [manifest_for(s, make_splits(s)) for s in (DatasetSpec("/", 97), DatasetSpec("+,-", 13))]
    table = stats_table(rows + [dict(task="Custom", p=5, train=1, val=2, test=3)]).splitlines()
    assert table[0] == "| Task                 | Modulus | Total Examples | Train | Val   | Test  |"
    assert set(table[1]) == {"|", "-"}
    assert [c.strip() for c in table[2].split("|")[1:-1]] == ["Division", "97", "9,312", "6,518", "1,396", "1,398"]
    assert table[3].split("|")[1].strip() == "Addition+Subtraction"
    assert [c.strip() for c in table[4].split("|")[1:-1]] == ["Custom", "5", "6", "1", "2", "3"]


# --- writing --------------------------------------------------------------------------------------------


def test_write_and_load_round_trip(tmp_path):
    spec = DatasetSpec("/", 23, seed=5)
    splits = make_splits(spec)
    manifest = write_dataset(spec, splits, tmp_path / "div23")
    for s in ("train", "val", "test"):
        text = (tmp_path / "div23" / f"{s}.txt").read_text()
        assert text == "".join(line + "\n" for line in splits[s])
    on_disk = json.loads((tmp_path / "div23" / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["format"] == "groklab-equations/1" and manifest["scheme"] == "enumerate"
    assert manifest["ops"] == [{"name": "div", "symbol": "/", "formula": "a/b (a = b*c)"}]
    assert manifest["counts"] == {s: len(splits[s]) for s in splits} and manifest["p"] == 23
    loaded, loaded_manifest = load_dataset_dir(tmp_path / "div23")
    assert loaded == splits and loaded_manifest == manifest
    assert not [f for f in os.listdir(tmp_path / "div23") if f.endswith(".tmp")]


def test_rewrite_of_the_same_dataset_is_a_no_op(tmp_path):
    spec = DatasetSpec("+", 11, num_samples=50)
    first = write_dataset(spec, make_splits(spec), tmp_path)
    mtime = (tmp_path / "train.txt").stat().st_mtime_ns
    assert write_dataset(spec, make_splits(spec), tmp_path) == first
    assert (tmp_path / "train.txt").stat().st_mtime_ns == mtime


def test_non_empty_output_directory_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    spec = DatasetSpec("+", 11)
    with pytest.raises(DataError, match=r"already holds other files \(notes.txt\); choose an empty directory"):
        write_dataset(spec, make_splits(spec), tmp_path)
    other = tmp_path / "other"
    write_dataset(spec, make_splits(spec), other)
    different = DatasetSpec("+", 11, seed=1)
    with pytest.raises(DataError, match=r"already holds other files \(manifest.json, test.txt, train.txt, val.txt\)"):
        write_dataset(different, make_splits(different), other)


def test_content_hash_follows_the_content():
    spec = DatasetSpec("+", 11)
    splits = make_splits(spec)
    base = manifest_for(spec, splits)["content_hash"]
    assert manifest_for(spec, make_splits(spec))["content_hash"] == base
    assert manifest_for(DatasetSpec("+", 11, seed=1), make_splits(DatasetSpec("+", 11, seed=1)))["content_hash"] != base
    swapped = dict(splits, val=splits["test"], test=splits["val"])  # same lines, other split
    assert manifest_for(spec, swapped)["content_hash"] != base


# --- reading --------------------------------------------------------------------------------------------


def write(path, data: str | bytes):
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


@pytest.mark.parametrize(
    "content, message",
    [
        ("1+1=2\n2+2=4\n3+=4\n4+4=8\n", r"train.txt:3: expected <number><operation><number>=<number>.*'3\+=4'"),
        ("1+1=2\n1+x=2\n", r"train.txt:2: unknown character 'x' at column 3"),
        ("1+1=2\n1 + 1=2\n", r"train.txt:2: unknown character ' ' at column 2"),
        ("1+1=2\n\n2+2=4\n", r"train.txt:2: blank line"),
        ("1+1=2\n2+2=4\n\n", r"train.txt:3: blank line"),
        ("1+1=2\n07+1=8\n", r"train.txt:2: number '07' has a leading zero"),
        ("1+1=2\n1+1=2=3\n", r"train.txt:2: expected"),
        ("", r"train.txt: no equations"),
        ("\n", r"train.txt: no equations"),
        (b"1+1=2\n2+2=4\n3+\xff3=6\n", r"train.txt:3: not UTF-8 text \(byte 0xff at column 3\)"),
        ("1+1=2\n" + "9" * 80 + "+1=2\n", r"train.txt:2: number 999999999999\.\.\. is too large"),
    ],
)
def test_bad_equation_files_name_file_and_line(tmp_path, content, message):
    path = write(tmp_path / "train.txt", content)
    with pytest.raises(DataError, match=message):
        read_equation_file(path)


def test_long_lines_are_truncated_in_messages(tmp_path):
    path = write(tmp_path / "train.txt", "1+1=2\n" + "1+" * 100 + "\n")
    with pytest.raises(DataError, match=r"train.txt:2: expected") as err:
        read_equation_file(path)
    shown = str(err.value).split("got ")[1]
    assert shown.endswith("...") and len(shown) <= 65


def test_accepted_variants(tmp_path):
    assert read_equation_file(write(tmp_path / "a.txt", "1+1=2\r\n0/3=0\r\n")) == ["1+1=2", "0/3=0"]
    assert read_equation_file(write(tmp_path / "b.txt", "1+1=2\n2+2=4")) == ["1+1=2", "2+2=4"]  # seed 003
    assert read_equation_file(write(tmp_path / "c.txt", "\ufeff10-3=7\n")) == ["10-3=7"]


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match=r"nope.txt: no such file"):
        read_equation_file(tmp_path / "nope.txt")
    with pytest.raises(DataError, match=r"missing: no such directory"):
        load_dataset_dir(tmp_path / "missing")
    with pytest.raises(DataError, match=r"train.txt: no such file"):
        load_dataset_dir(tmp_path)
    write(tmp_path / "train.txt", "1+1=2\n")
    with pytest.raises(DataError, match=r"val.txt: no such file"):
        load_dataset_dir(tmp_path)
    write(tmp_path / "val.txt", "")  # a 0 val fraction writes an empty file; test.txt may be missing
    assert load_dataset_dir(tmp_path) == ({"train": ["1+1=2"], "val": [], "test": []}, None)


def test_wrong_answer_with_a_manifest_names_file_and_line(tmp_path):
    spec = DatasetSpec("/", 97)
    write_dataset(spec, make_splits(spec), tmp_path)
    lines = (tmp_path / "val.txt").read_text().splitlines()
    a, _, b, c = parse_equation(lines[2])
    lines[2] = f"{a}/{b}={(c + 1) % 97}"
    write(tmp_path / "val.txt", "\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"val.txt: does not match .*manifest.json"):
        load_dataset_dir(tmp_path)
    # a manifest re-hashed by hand still cannot vouch for a wrong answer
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["sha256"].pop("val.txt")
    write(tmp_path / "manifest.json", json.dumps(manifest))
    with pytest.raises(DataError, match=rf"val.txt:3: {a}/{b}={(c + 1) % 97} is wrong mod 97: expected {c}"):
        load_dataset_dir(tmp_path)


def test_check_equations():
    check_equations(["30/74=24", "1+1=2"], 97, "x.txt")
    with pytest.raises(DataError, match=r"x.txt:2: 30/74=13 is wrong mod 97: expected 24"):
        check_equations(["1+1=2", "30/74=13"], 97, "x.txt")
    with pytest.raises(DataError, match=r"x.txt:1: number 97 in 97\+1=1 is not below p = 97"):
        check_equations(["97+1=1"], 97, "x.txt")
    with pytest.raises(DataError, match=r"x.txt:1: 3/0 is undefined mod 97"):
        check_equations(["3/0=0"], 97, "x.txt")
    with pytest.raises(DataError, match=r"x.txt:2: operation '-'"):
        check_equations(["1+1=2", "1-1=0"], 97, "x.txt", ops=["+"])


def test_seed_003_file_naming(tmp_path):
    write(tmp_path / "train_97.txt", "1+1=2\n2+2=4")
    write(tmp_path / "val_97.txt", "3+3=6")
    write(tmp_path / "test_97.txt", "4+4=8")
    splits, manifest = load_dataset_dir(tmp_path)
    assert splits == {"train": ["1+1=2", "2+2=4"], "val": ["3+3=6"], "test": ["4+4=8"]} and manifest is None
    write(tmp_path / "train_113.txt", "1+1=2")
    write(tmp_path / "val_113.txt", "1+1=2")
    with pytest.raises(DataError, match=r"several datasets \(113, 97\)"):
        load_dataset_dir(tmp_path)
    assert load_dataset_dir(tmp_path, name="113")[0]["test"] == []


def test_read_text_file(tmp_path):
    assert read_text_file(write(tmp_path / "t.txt", "I love machine learning")) == "I love machine learning"
    with pytest.raises(DataError, match=r"empty.txt: empty file"):
        read_text_file(write(tmp_path / "empty.txt", ""))
    with pytest.raises(DataError, match=r"latin1.txt:2: not UTF-8"):
        read_text_file(write(tmp_path / "latin1.txt", "ok\nd\xe9j\xe0 vu".encode("latin-1")))
    with pytest.raises(DataError, match=r"gone.txt: no such file"):
        read_text_file(tmp_path / "gone.txt")


# --- properties -------------------------------------------------------------------------------------------

numbers = st.integers(0, 10**6)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("0123456789+-*/=#x \n\r\t٣"), max_size=20) | st.text(max_size=20))
def test_parse_equation_returns_a_tuple_or_raises_data_error(line):
    try:
        a, symbol, b, c = parse_equation(line)
    except DataError:
        return
    assert f"{a}{symbol}{b}={c}" == line  # only canonical text parses


@settings(max_examples=200, deadline=None)
@given(numbers, st.sampled_from("+-*/#@&$!"), numbers, numbers)
def test_parse_equation_inverts_formatting(a, symbol, b, c):
    assert parse_equation(f"{a}{symbol}{b}={c}") == (a, symbol, b, c)


def test_a_manifest_holding_nan_is_refused(tmp_path):
    # Python's json writes NaN and reads it back, but it is not JSON and groklab never writes it (hypothesis
    # found a manifest whose content_hash was NaN loading as if it were valid)
    spec = DatasetSpec("+", 5)
    write_dataset(spec, make_splits(spec), tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    write(tmp_path / "manifest.json", json.dumps(manifest | {"content_hash": float("nan")}))
    with pytest.raises(DataError, match=r"manifest.json: not a readable JSON manifest \(NaN is not a JSON value\)"):
        load_dataset_dir(tmp_path)


def test_two_data_writers_on_one_folder_never_mix(tmp_path, monkeypatch):
    """`groklab data --text A` and `--text B` on one --out at once: the second is refused while the first
    writes (the folder's lock), and the folder holds the first's text and manifest alone; the same command
    again afterwards is a no-op, another text is refused."""
    from groklab.data import equations
    from groklab.data.textset import read_text_folder, write_text_dataset
    from groklab.lock import FolderInUse

    out = tmp_path / "d"
    real = equations.atomic_write
    refused = []

    def write_and_race(path, text):
        if not refused:
            with pytest.raises(FolderInUse, match="is in use by pid"):
                write_text_dataset("the other text", out)
            refused.append(path.name)
        real(path, text)

    monkeypatch.setattr(equations, "atomic_write", write_and_race)
    write_text_dataset("one text", out)
    monkeypatch.undo()
    assert refused == ["text.txt"] and read_text_folder(out) == "one text"
    write_text_dataset("one text", out)
    with pytest.raises(DataError, match="already holds other files"):
        write_text_dataset("the other text", out)
