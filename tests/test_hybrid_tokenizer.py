"""The hybrid tokenization (digits in, one token per answer out): round trip, one answer token, strictness,
its vocabulary saved and checked, and a run trained and sampled with it."""

import pytest

from groklab.cli import main
from groklab.errors import TokenizerError
from groklab.analysis.sample import complete
from groklab.store.loadrun import load_run
from groklab.data.tokenizer import HybridTokenizer, load_tokenizer, make_tokenizer


def test_operands_are_characters_and_the_answer_is_one_token():
    tok = make_tokenizer("hybrid", "/", 97)
    assert isinstance(tok, HybridTokenizer) and tok.vocab_size == 10 + 3 + 97
    ids = tok.encode("30/74=24\n")
    assert len(ids) == 2 + 1 + 2 + 1 + 1 + 1  # 3 0 / 7 4 = <24> \n
    assert tok.decode(ids) == "30/74=24\n"
    assert ids[-2] == 10 + 3 + 24 and ids[:2] == [3, 0]
    two = tok.encode("1/2=3\n1/3=4\n")  # '=' opens the answer only up to the end of its line
    assert two.count(tok.encode("1")[0]) == 2 and tok.decode(two) == "1/2=3\n1/3=4\n"


@pytest.mark.parametrize("bad,msg", [("3/4=97\n", "not below p = 97"), ("3/4=07\n", "leading zero"),
                                     ("3x4=1\n", "'x' at position 1")])
def test_the_answer_is_strict(bad, msg):
    with pytest.raises(TokenizerError, match=msg):
        make_tokenizer("hybrid", "/", 97).encode(bad)


def test_a_hybrid_run_trains_saves_its_vocabulary_and_samples(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--operators", "+", "--prime", "13", "--tokenizer", "hybrid", "--n_layer", "1",
                 "--n_embd", "16", "--n_head", "2", "--max_steps", "5", "--batch_size", "8", "--out_dir", str(out),
                 "--no-progress", "--no-plot"]) == 0
    assert isinstance(load_tokenizer(out / "vocab.json"), HybridTokenizer)
    text = complete(load_run(out), "12+7=", 2, temperature=0, top_k=None, generator=None, stop_at_newline=True)
    assert text.startswith("12+7=")
