"""Tiny configurations shared by the tests (seconds each on two CPU cores)."""

from groklab.config import DataConfig, ModelConfig, OptimConfig, RunConfig, TrainConfig


def tiny_config(out_dir, **changes) -> RunConfig:
    cfg = RunConfig(
        data=DataConfig(operators="+", prime=7, tokenizer="char", train_fraction=0.6, val_fraction=0.2),
        model=ModelConfig(n_layer=1, n_head=2, n_embd=16),
        optim=OptimConfig(learning_rate=3e-3, weight_decay=0.1),
        train=TrainConfig(out_dir=str(out_dir), max_steps=12, batch_size=8, eval_points_per_decade=3,
                          checkpoint_interval=5, progress=False, plot=False),
    )
    return cfg.replace(**changes) if changes else cfg
