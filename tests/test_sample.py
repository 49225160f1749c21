import torch

from groklab.config import ModelConfig
from groklab.model.gpt import GPT
from groklab.analysis.sample import generate, interactive

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


def test_interactive_loop_survives_bad_prompt():
    from groklab.analysis.sample import LoadedRun
    from groklab.data.tokenizer import CharTokenizer

    tok = CharTokenizer("0123456789")
    run = LoadedRun(run_dir="x", cfg=None, tokenizer=tok, model=_model(), step=0)
    inputs = iter(["12", "1a", "3"])
    lines: list[str] = []

    def read(_prompt):
        try:
            return next(inputs)
        except StopIteration:
            raise EOFError

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
    inputs = iter(["1+2=", "4+4="])
    lines: list[str] = []

    def read(_prompt):
        try:
            return next(inputs)
        except StopIteration:
            raise EOFError

    interactive(run, 8, 0.0, None, None, read=read, write=lines.append)
    assert lines[1:] == ["1+2=3", "4+4=3", ""]  # the last: Ctrl-D ends the prompt's line, as a shell expects
