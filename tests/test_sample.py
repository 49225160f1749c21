"""Sampling: same seed same sample, top-k, greedy decoding, the interactive loop; then prompts fuzzed against
tiny trained runs (each kind of case adds a row to docs/reliability.md)."""

from collections import Counter

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from groklab.config import ModelConfig
from groklab.errors import GroklabError, TokenizerError
from groklab.model.gpt import GPT
from groklab.analysis.sample import complete, generate, interactive
from groklab.store.loadrun import load_run
from helpers import FAST, assert_clean_error, hide, run_cli

V = 10


def _model():
    m = GPT(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=8), V, 1)
    m.init_from_seeds([0])
    with torch.no_grad():
        m.flat.mul_(20)  # sharper distributions so top-k matters
    m.training = False
    return m


def test_same_seed_same_sample_and_max_new_tokens():
    m = _model()
    a = generate(m, [1, 2], 12, temperature=1.0, generator=torch.Generator().manual_seed(3))
    b = generate(m, [1, 2], 12, temperature=1.0, generator=torch.Generator().manual_seed(3))
    assert a == b and len(a) == 14 and a[:2] == [1, 2]


def test_top_k_only_picks_the_k_likeliest():
    m = _model()
    with torch.no_grad():
        logits = m(torch.tensor([[[4, 5]]]))[0, 0, -1]
    allowed = set(torch.topk(logits, 2).indices.tolist())
    seen = {generate(m, [4, 5], 1, temperature=50.0, top_k=2, generator=torch.Generator().manual_seed(s))[-1]
            for s in range(200)}
    assert seen <= allowed and len(seen) == 2


def test_greedy_is_argmax_and_context_is_cropped():
    m = _model()
    out = generate(m, list(range(8)), 5, temperature=0)  # longer than block_size after the first step
    with torch.no_grad():
        first = int(m(torch.tensor([[list(range(8))]]))[0, 0, -1].argmax())
    assert out[8] == first and len(out) == 13


def _reader(answers: list[str]):
    """input() for interactive: these answers, then Ctrl-D (EOFError)."""
    it = iter(answers)

    def read(_prompt):
        try:
            return next(it)
        except StopIteration:
            raise EOFError from None

    return read


def test_interactive_loop_survives_bad_prompt():
    from groklab.analysis.sample import LoadedRun
    from groklab.data.tokenizer import CharTokenizer

    tok = CharTokenizer("0123456789")
    run = LoadedRun(run_dir="x", cfg=None, tokenizer=tok, model=_model(), step=0)
    read = _reader(["12", "1a", "3"])
    lines: list[str] = []
    interactive(run, 2, 0.0, None, None, read=read, write=lines.append)
    assert any("error" in line and "'a'" in line for line in lines)
    assert sum(1 for line in lines if line.startswith("12")) == 1 and any(line.startswith("3") for line in lines)


class _NewlineModel:
    """Greedy decoding gives the answer '3' after '=', then the end-of-line token forever after."""

    def __init__(self, tok):
        from types import SimpleNamespace

        self.tok, self.cfg, self.device = tok, SimpleNamespace(block_size=16), torch.device("cpu")

    def __call__(self, ctx):
        V = self.tok.vocab_size
        last = self.tok.decode([int(ctx[0, 0, -1])])
        logits = torch.zeros(1, 1, ctx.shape[-1], V)
        logits[0, 0, -1, self.tok.encode("3" if last == "=" else "\n")[0]] = 10.0
        return logits


def test_interactive_stops_at_the_end_of_the_line_and_prints_no_empty_lines():
    from groklab.analysis.sample import LoadedRun
    from groklab.data.tokenizer import CharTokenizer

    tok = CharTokenizer("0123456789+=\n")
    run = LoadedRun(run_dir="x", cfg=None, tokenizer=tok, model=_NewlineModel(tok), step=0)
    read = _reader(["1+2=", "4+4="])
    lines: list[str] = []
    interactive(run, 8, 0.0, None, None, read=read, write=lines.append)
    assert lines[1:] == ["1+2=3", "4+4=3", ""]  # the last: Ctrl-D ends the prompt's line, as a shell expects


# =========================================================================================================
# fuzzed: random prompts and sampling flags to tiny trained runs (the tiny_runs fixture)
# =========================================================================================================


def test_random_prompts_complete_or_are_refused(tiny_runs, reliability):
    counts: Counter[str] = Counter()
    example: dict[str, str] = {}
    loaded = {name: load_run(tiny_runs / name) for name in ("plus", "num")}

    equation_prompts = st.builds("{}+{}=".format, st.integers(0, 6), st.integers(0, 6))

    @settings(max_examples=80, **FAST)
    @given(st.sampled_from(sorted(loaded)), equation_prompts | st.text(alphabet="0123456+=", max_size=8)
           | st.text(alphabet="0123456789+/=\n x٣é", max_size=12) | st.text(max_size=6),
           st.integers(0, 3), st.sampled_from([0.0, 1e-300, 0.7, 1.0, 1e300, float("inf")]),
           st.sampled_from([None, 1, 3, 100]))
    def check(name, prompt, n, temperature, top_k):
        run = loaded[name]
        try:
            text = complete(run, prompt, n, temperature, top_k, None)
        except GroklabError as exc:
            kind = "empty" if not prompt else "unknown"
            assert isinstance(exc, TokenizerError) or kind == "empty", exc
            counts[kind] += 1
            if kind == "unknown":
                example.setdefault(name, str(exc))
            return
        assert text.startswith(prompt)
        if name == "plus":  # number tokens decode without separators ([0, 0] is "00"), so count chars only here
            assert len(text) <= len(prompt) + n
        counts["completed"] += 1

    check()
    assert counts["completed"] and counts["unknown"]
    reliability("sampling prompt", f"{sum(counts.values())} random prompts (out-of-vocabulary characters, '٣', "
                "numbers ≥ p, empty) to a char and a number-tokenizer run, temperatures 0 to inf and 1e-300",
                f"{counts['completed']} completed (the output starts with the prompt); {counts['unknown']} refused "
                f"naming the character or number and its position, e.g. {example['plus']!r} / {example['num']!r}; "
                f"{counts['empty']} empty prompts refused")


def test_out_of_vocabulary_prompt_and_bad_sampling_flags_on_the_command_line(tiny_runs, capsys, reliability):
    run = str(tiny_runs / "plus")
    cases = [
        ("an out-of-vocabulary prompt ('3x4=')", ["--prompts", "3x4="], "'x'"),
        ("a prompt with '/' to a '+' run", ["--prompt", "30/74="], "'/'"),
        ("a number at or above p to a number-tokenizer run", ["--prompt", "7+2="], "not below p = 7"),
        ("an empty prompt", ["--prompt", ""], "the prompt is empty"),
        ("--temperature nan", ["--prompts", "1+2=", "--temperature", "nan"], "temperature must be >= 0"),
        ("--temperature -1", ["--prompts", "1+2=", "--temperature", "-1"], "must be >= 0"),
        ("--seed 2^70", ["--prompts", "1+2=", "--seed", str(2**70)], "--seed"),
        ("--max_new_tokens -1", ["--prompts", "1+2=", "--max_new_tokens", "-1"], "must be >= 0"),
        ("--top_k abc", ["--prompts", "1+2=", "--top_k", "abc"], "invalid int value"),
    ]
    if not torch.cuda.is_available():
        cases.append(("--device cuda on a machine without CUDA", ["--prompts", "1+2=", "--device", "cuda"],
                      "sees no CUDA GPU"))
    for name, flags, message in cases:
        target = str(tiny_runs / "num") if "number-tokenizer" in name else run
        code, _, err = run_cli(capsys, ["sample", target, *flags])
        line = assert_clean_error(code, err)
        assert message in line, line
        reliability("sampling prompt", f"`groklab sample` with {name}", f"exit 2: {hide(line, tiny_runs)}")
    argv = ["sample", run, "--prompts", "1+2=,3+3=,6+0=", "--max_new_tokens", "3"]
    code, out, _ = run_cli(capsys, [*argv, "--temperature", "1e-300"])
    assert code == 0 and out.startswith("1+2=")
    greedy = run_cli(capsys, [*argv, "--temperature", "0"])[1]
    assert out == greedy
    reliability("sampling prompt", "`groklab sample --temperature 1e-300` (logits / T overflow float32)",
                f"exit 0, the same completions as --temperature 0: {out.split()!r}")


def test_interactive_mode_survives_any_line(tiny_runs, reliability):
    run = load_run(tiny_runs / "plus")
    counts: Counter[str] = Counter()

    @settings(max_examples=60, **FAST)
    @given(st.lists(st.text(alphabet="0123456789+=x/ \t٣", max_size=8) | st.text(max_size=4), max_size=5))
    def check(lines):
        inputs = iter(lines)
        written: list[str] = []

        def read(_prompt):
            try:
                return next(inputs)
            except StopIteration:
                raise EOFError from None

        interactive(run, 2, 0.0, None, None, read=read, write=written.append)
        asked = []
        for line in lines:  # an empty line (or quit, exit) ends the session
            if line.strip() in ("", "quit", "exit"):
                break
            asked.append(line)
        ended_by_eof = len(asked) == len(lines)
        answers = written[1 : len(written) - ended_by_eof]
        assert len(answers) == len(asked) and (not ended_by_eof or written[-1] == "")
        for line, answer in zip(asked, answers):
            assert answer.startswith(line) or answer.startswith("error: ")
        counts["sessions"] += 1
        counts["answered"] += len(asked)
        counts["errors"] += sum(1 for w in answers if w.startswith("error: "))

    check()
    reliability("sampling prompt", f"{counts['sessions']} interactive sessions of random lines, then Ctrl-D",
                f"every session ended normally; each of the {counts['answered']} lines before an empty one got one "
                f"answer: a completion, or for {counts['errors']} of them 'error: ...', and the loop went on")
