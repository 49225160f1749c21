"""Power et al.'s permutation tasks (x∘y, x∘y∘x⁻¹, x∘y∘x in S_n, one number a permutation): their values
against an independent statement, the p = n! check, files written and read back strictly, tokens that
round-trip, and a run trained from a sweep spec."""

import itertools

import pytest

from groklab.cli import main
from groklab.data.equations import DatasetSpec, make_splits
from groklab.data.parse import check_equations, load_dataset_dir
from groklab.errors import DataError
from groklab.data.ops import OPERATIONS, check_modulus, perm_degree, permutation, rank, resolve_ops, unrank
from groklab.experiments.spec import parse_spec
from groklab.data.tokenizer import make_tokenizer


def _compose(x, y):  # (x∘y)(i) = x(y(i)): y first
    return tuple(x[y[i]] for i in range(len(x)))


def _inverse(x):
    return tuple(sorted(range(len(x)), key=lambda i: x[i]))


WORDS = {"o": lambda x, y: _compose(x, y), "%": lambda x, y: _compose(_compose(x, y), _inverse(x)),
         ":": lambda x, y: _compose(_compose(x, y), x)}


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_numbering_is_the_lexicographic_rank(n):
    perms = list(itertools.permutations(range(n)))
    assert [unrank(i, n) for i in range(len(perms))] == perms
    assert [rank(x) for x in perms] == list(range(len(perms)))
    assert permutation(0, len(perms)) == tuple(range(n))  # 0 is the identity


@pytest.mark.parametrize("symbol", sorted(WORDS))
@pytest.mark.parametrize("n", [3, 4])
def test_the_operations_match_their_words(symbol, n):
    p = len(list(itertools.permutations(range(n))))
    perms = list(itertools.permutations(range(n)))
    op = OPERATIONS[symbol]
    for a, b in itertools.product(range(p), repeat=2):
        assert op.apply(a, b, p) == perms.index(WORDS[symbol](perms[a], perms[b]))


def test_s5_is_a_group_and_not_commutative():
    o, conj = OPERATIONS["o"], OPERATIONS["%"]
    assert all(o.apply(0, b, 120) == b == o.apply(b, 0, 120) for b in range(120))  # identity
    assert any(o.apply(a, b, 120) != o.apply(b, a, 120) for a in range(120) for b in range(120))
    assert all(conj.apply(a, 0, 120) == 0 for a in range(120))  # the identity's conjugates are itself
    x, y = 17, 53
    assert o.apply(o.apply(x, y, 120), 7, 120) == o.apply(x, o.apply(y, 7, 120), 120)  # associative


def test_p_must_be_a_factorial():
    check_modulus(120, "o")
    check_modulus(6, "perm_conj,perm_aba")
    assert perm_degree(120) == 5 and perm_degree(97) is None
    with pytest.raises(DataError, match=r"operation o \(perm\) acts on the permutations .* p must be n! "
                                        r"\(2, 6, 24, 120, 720, 5040; 120 for S5\), got 97"):
        check_modulus(97, "o")
    assert [op.symbol for op in resolve_ops("perm,perm_conj,perm_aba")] == ["o", "%", ":"]


def test_files_are_written_strictly_and_read_back(tmp_path, capsys):
    assert main(["data", "--op", "o,%,:", "--p", "24", "--out", str(tmp_path / "s4"), "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "0 = 0123 (the identity), 1 = 0132, ..., 23 = 3210" in out
    splits, manifest = load_dataset_dir(tmp_path / "s4")
    assert sum(len(v) for v in splits.values()) == 3 * 24 * 24 and manifest["p"] == 24
    # a wrong answer and a number past n! are refused, naming the file and line
    lines = (tmp_path / "s4/train.txt").read_text().splitlines()
    wrong = lines[:2] + [lines[2][: lines[2].index("=") + 1] + str((int(lines[2].split("=")[1]) + 1) % 24)]
    with pytest.raises(DataError, match=r"x\.txt:3: .* is wrong for the permutations numbered 0\.\.23: expected"):
        check_equations(wrong, 24, "x.txt")
    with pytest.raises(DataError, match=r"x\.txt:1: number 24 in 24o1=1 is not below p = 24"):
        check_equations(["24o1=1"], 24, "x.txt")


@pytest.mark.parametrize("kind", ["number", "char"])
def test_tokens_round_trip_and_number_tokens_are_one_per_permutation(kind):
    spec = DatasetSpec(ops="o,%,:", p=120, num_samples=200, seed=3)
    lines = [line for split in make_splits(spec).values() for line in split]
    tok = make_tokenizer(kind, "o%:", 120)
    for line in lines:
        ids = tok.encode(line + "\n")
        assert tok.decode(ids) == line + "\n"
        if kind == "number":
            assert len(ids) == 6  # x, op, y, =, answer, end of line: one token per permutation


S3_SPEC = """
name = "s3"
[base]
operators = "o"
prime = 6
tokenizer = "number"
n_layer = 1
n_embd = 16
n_head = 2
max_steps = 4
batch_size = 8
train_fraction = 0.5
val_fraction = 0.5
[grid]
seed = [1, 2]
"""


def test_a_sweep_trains_an_s3_task_end_to_end(tmp_path):
    assert [r.run_id for r in parse_spec(S3_SPEC, "s3.toml").expand()] == ["s3/seed=1", "s3/seed=2"]
    (tmp_path / "s3.toml").write_text(S3_SPEC)
    assert main(["sweep", str(tmp_path / "s3.toml"), "--out", str(tmp_path / "sweep"), "--no-plot"]) == 0
    trained = sorted((tmp_path / "sweep/runs").rglob("summary.json"))
    assert len(trained) == 2
    assert (trained[0].parent / "data/train.txt").read_text().splitlines()[0].count("o") == 1
