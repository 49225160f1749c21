"""Where a run's data comes from, as the seeds spelled it on the command line.

- `groklab train textfile.txt` (seed 003): a text to memorise;
- `groklab train DATA_DIR`, or `--data_dir DATA_DIR`: an equation folder, or a text folder (`groklab data
  --text`, seed 000's `data/sanity_check`), which becomes a text run;
- `groklab train . --prime 97 --operators "/"` (seed 003's 2.3): seed 003 trained on 5,000 random equations
  split 40/40/20, so a folder given beside --operators/--prime means that data (--num_samples, --train_fraction
  and --val_fraction say otherwise); the folder itself is not read.
"""

from __future__ import annotations

from pathlib import Path

from groklab.config import RunConfig
from groklab.data.equations import DatasetSpec, all_equations
from groklab.data.equations import TEXT_FILE
from groklab.data.textset import is_text_folder, read_text_folder
from groklab.errors import GroklabError

SEED003_SAMPLES = 5000  # seed 003: "5000 samples for p=97 and p=113", split 40/40/20


def text_folder_source(cfg: RunConfig) -> RunConfig:
    """A --data_dir that holds a text (checked now, as strictly as training reads it) becomes its text file,
    so the run is a text run everywhere: its config, its summary, `sample` and `report`."""
    d = cfg.data
    if d.data_dir is None or not is_text_folder(d.data_dir):
        return cfg
    read_text_folder(d.data_dir)
    return cfg.replace(data_dir=None, text_file=str(Path(d.data_dir) / TEXT_FILE))


def _seed003_note(path: str, cfg: RunConfig) -> str:
    d = cfg.data
    spec = DatasetSpec(ops=d.operators, p=d.prime, num_samples=d.num_samples)
    ft, fv, _ = spec.resolved_fractions
    ft = d.train_fraction if d.train_fraction is not None else ft
    fv = d.val_fraction if d.val_fraction is not None else fv
    what = " and ".join(op.title.lower() for op in spec.operations)
    return (f"note: a folder ({path!r}) with --operators/--prime is seed 003's spelling: {d.num_samples:,} random "
            f"equations ({what} mod {d.prime}), split {ft:.0%}/{fv:.0%}/{1 - ft - fv:.0%} (seed 003's data; "
            "--num_samples, --train_fraction, --val_fraction change it); the folder itself is not read")


def positional_source(path: str | None, cfg: RunConfig) -> tuple[RunConfig, str | None]:
    """`groklab train [PATH] ...`: the config with PATH's meaning applied, and a note to print (or None)."""
    if path is None:
        return text_folder_source(cfg), None
    p = Path(path)
    if cfg.data.operators is not None or cfg.data.prime is not None:
        if not p.is_dir():
            return cfg, f"note: ignoring the data path {path!r}: --operators/--prime build the data on the fly"
        if cfg.data.num_samples is None:  # all of them where there are fewer (seed 003 drew with replacement)
            total = len(all_equations(cfg.data.operators, cfg.data.prime))
            cfg = cfg.replace(num_samples=min(SEED003_SAMPLES, total))
        return cfg, _seed003_note(path, cfg)
    if p.is_dir():
        return text_folder_source(cfg.replace(data_dir=str(p), text_file=None)), None
    if p.is_file():
        return cfg.replace(text_file=str(p), data_dir=None), None
    raise GroklabError(f"{path}: no such file or directory")
