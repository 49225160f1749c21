"""What the benchmarks share: seed 000's grokking setting, the engine as the trainer builds it, the eager
nanoGPT-style baseline, and timing that alternates windows so drift in the machine's speed hits both."""

from __future__ import annotations

import ast
import platform
import statistics
import time
from datetime import datetime, timezone

import torch

from groklab.config import DataConfig, ModelConfig, OptimConfig
from groklab.data.dataset import RunData, load_run_data
from groklab.engine.step import Engine
from groklab.engine.hyper import Hyper
from groklab.data.examples import stack
from groklab.model.gpt import GPT
from groklab.model.reference import ReferenceGPT, make_optimizer, reference_step
from groklab.training.groups import plan_groups
from groklab.training.loop import open_group

OPTIM = OptimConfig(learning_rate=1e-3, weight_decay=1.0, beta1=0.9, beta2=0.98, grad_clip=0.0)


def seed000_data() -> tuple[RunData, ModelConfig]:
    """Char-level division mod 97, loss after '=', 2 layers, d 128, 4 heads (seed 000's grokking run)."""
    data = load_run_data(DataConfig(operators="/", prime=97, tokenizer="char"), ModelConfig())
    return data, ModelConfig(n_layer=2, n_head=4, n_embd=128, block_size=data.block_size)


def groklab_engine(data: RunData, mcfg: ModelConfig, E: int, batch: int, device: torch.device,
                   compile: bool = False, precision: str = "fp32") -> Engine:
    """E runs (seeds 0..E-1) built and captured exactly as `groklab train` does; `engine.setup_s` is what
    that took (with `compile`, the compilation: from the on-disk cache when an earlier process filled it)."""
    t0 = time.perf_counter()
    model = GPT(mcfg, data.tokenizer.vocab_size, E, device)
    model.init_from_seeds(list(range(E)))
    train = data.splits["train"]
    # fp32 without the argument: the same benchmark then also times a checkout from before precision existed
    engine = Engine(model, Hyper.build([OPTIM] * E, list(range(E)), [batch] * E, device), stack([train] * E),
                    compile=compile, **({} if precision == "fp32" else {"precision": precision}))
    engine.path = engine.capture_cuda_graph() + ("+compile" if compile else "")
    engine.ran = getattr(getattr(engine, "precision", None), "ran", "fp32")  # after capture: tf32 needs a graph
    sync(device)
    engine.setup_s = time.perf_counter() - t0
    return engine


def eager_step_fn(data: RunData, mcfg: ModelConfig, batch: int, device: torch.device, seed: int = 0):
    """One nanoGPT-style run: host-side torch.randint batches, loss.backward(), fused torch AdamW."""
    torch.manual_seed(seed)
    ref = ReferenceGPT(mcfg, data.tokenizer.vocab_size).to(device)
    opt = make_optimizer(ref, OPTIM, fused=True)
    X, Y = data.splits["train"].inputs, data.splits["train"].targets

    def step() -> None:
        ix = torch.randint(len(X), (batch,))
        x, y = X[ix], Y[ix]
        if device.type == "cuda":
            x, y = x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
        reference_step(ref, opt, x, y)

    return step


def study_groups(runs, device: torch.device, compile: bool, tmp: str):
    """A study's runs (its spec expanded) as its sweep would train them here: their configs (folders under
    `tmp`, compiled or not), their data, and the engine groups the sweep plans."""
    configs = [r.config.replace(out_dir=f"{tmp}/{i}", compile=compile, device=device.type) for i, r in enumerate(runs)]
    datas = [load_run_data(c.data, c.model) for c in configs]
    return configs, datas, plan_groups(configs, datas)


def study_args(ap, steps: int) -> None:
    """The options of a benchmark over a study's groups: --study, --steps, --compile, --precision."""
    ap.add_argument("--study", default="seed-000")
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"])


def inductor_args(ap) -> None:
    """--inductor KEY=VALUE (repeatable): a torch._inductor.config setting for the compiled step."""
    ap.add_argument("--inductor", action="append", default=[], metavar="KEY=VALUE",
                    help="a torch._inductor.config setting for the compiled step (repeatable)")


def apply_inductor(settings: list[str]) -> None:
    """Set each KEY=VALUE of --inductor (VALUE a Python literal) before anything compiles; a key inductor does
    not have is an error, not a silent no-op."""
    import torch._inductor.config as inductor

    for setting in settings:
        key, value = setting.split("=", 1)
        if not hasattr(inductor, key):
            raise SystemExit(f"no such inductor setting: {key}")
        setattr(inductor, key, ast.literal_eval(value))


def open_study(runs, device: torch.device, compile: bool, tmp: str):
    """Every engine group of a study opened as its sweep opens them, one after another: (the groups' run
    indices, the open groups, seconds it took)."""
    configs, datas, planned = study_groups(runs, device, compile, tmp)
    t0 = time.perf_counter()
    groups = [open_group([configs[i] for i in g], datas=[datas[i] for i in g], log=lambda line: None)
              for g in planned]
    return planned, groups, time.perf_counter() - t0


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()  # host sync: the timer must see finished work


def window(fn, device: torch.device, steps: int, clock=time.perf_counter) -> float:
    """ms per call over `steps` calls (`clock`: time.process_time counts this process's CPU time alone, which
    other work on a shared CPU does not add to)."""
    sync(device)
    t0 = clock()
    for _ in range(steps):
        fn()
    sync(device)
    return (clock() - t0) * 1000 / steps


def time_pair(ours, theirs, device: torch.device, steps: int, repeats: int) -> tuple[float, float]:
    """Median ms per step of each after an untimed warm-up window each; windows alternate."""
    window(ours, device, steps)
    window(theirs, device, steps)
    a, b = [], []
    for _ in range(repeats):
        a.append(window(ours, device, steps))
        b.append(window(theirs, device, steps))
    return statistics.median(a), statistics.median(b)


def time_many(fns: dict[str, object], device: torch.device, steps: int, repeats: int,
              clock=time.perf_counter) -> dict[str, float]:
    """Median ms per call of each, after an untimed warm-up window each; windows go round-robin, so drift
    in the machine's speed hits every one alike."""
    for fn in fns.values():
        window(fn, device, steps, clock)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(window(fn, device, steps, clock))
    return {name: statistics.median(t) for name, t in times.items()}


def machine(device: torch.device) -> dict:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": name,
            "torch": torch.__version__, "threads": torch.get_num_threads()}


def summary(values: list[int | None]) -> str:
    """Steps per seed (None: never) -> "median (min–max)", with how many never got there."""
    got = sorted(v for v in values if v is not None)
    if not got:
        return "never"
    text = f"{statistics.median(got):,.0f} ({got[0]:,}–{got[-1]:,})"
    return text if len(got) == len(values) else f"{text}, {len(values) - len(got)} never"
