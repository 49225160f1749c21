"""`--backend ray`: engine groups as Ray tasks, for a sweep across many machines (`pip install 'groklab[ray]'`).

Each group becomes one task that asks for `gpus_per_group` of a GPU (where the cluster has GPUs) and one
CPU. A task whose worker dies (pre-emption, OOM kill, a lost node) is retried by Ray; the retry calls the
same planning as a re-run command (`rundir.plan`), so it resumes from the group's last checkpoint. The sweep folder
must be on storage that every node sees (NFS or similar), as for any Ray job that writes checkpoints.
`--address` joins a running cluster (`ray start --head` on one machine, `ray start --address=...` on the
others); without it a local Ray instance is started for this sweep.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from groklab.store import rundir
from groklab.config import RunConfig
from groklab.data.dataset import load_run_data
from groklab.errors import GroklabError
from groklab.training.groups import fail_run, plan_chunks, train_many
from groklab.training.interrupts import Interrupted, signal_name, stop_on_signals
from groklab.store.sweepdir import log_to

TASK_RETRIES = 3  # of a group whose worker died; Python errors are recorded per run instead
TASK_MAX_GROUP = 256  # runs a task, when --max_group is not given (a worker retries smaller on out-of-memory)


def _train_group(config_dicts: list[dict], argv: list[str] | None, retry_failed: bool, log_path: str) -> list[dict]:
    """Runs on a Ray worker: train (or resume) one group; returns each run's summary or failure."""
    configs = [RunConfig.from_dict(d) for d in config_dicts]
    return train_many(configs, argv=argv, log=log_to(log_path), isolate=True, retry_failed=retry_failed)


def plan_tasks(configs: Sequence[RunConfig], max_group: int | None) -> list[list[RunConfig]]:
    """The groups a local sweep would train, split into tasks of at most `max_group` runs (the driver cannot
    see the workers' GPU memory, so it does not size groups from it)."""
    datas = [load_run_data(c.data, c.model) for c in configs]
    starts = [rundir.saved_step(c.train.out_dir) or 0 for c in configs]
    return [[configs[i] for i in chunk]
            for chunk in plan_chunks(configs, datas, max_group or TASK_MAX_GROUP, None, starts)]


def train_on_ray(configs: Sequence[RunConfig], argv: list[str] | None, address: str | None, gpus_per_group: float,
                 max_group: int | None, retry_failed: bool, progress, log_path: Path) -> None:
    """Each group of `configs` as a Ray task; the workers append to the sweep's log at `log_path`."""
    log = log_to(log_path)
    try:
        import ray
    except ImportError:
        raise GroklabError("--backend ray needs Ray: pip install 'groklab[ray]'") from None
    if not configs:
        return
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        wants_gpu = any(c.train.device != "cpu" for c in configs) and gpus > 0
        remote = ray.remote(_train_group).options(
            num_cpus=1, num_gpus=gpus_per_group if wants_gpu else 0, max_retries=TASK_RETRIES, retry_exceptions=False,
        )
        tasks = plan_tasks(configs, max_group)
        pending = {}
        for task in tasks:
            ref = remote.remote([c.to_dict() for c in task], argv, retry_failed, str(log_path))
            # the run-steps this task owes, for the live line (it reports only when it ends)
            pending[ref] = (task, sum(c.train.max_steps - (rundir.saved_step(c.train.out_dir) or 0) for c in task))
        log(f"ray: {len(tasks)} group task(s) on {ray.cluster_resources().get('CPU', 0):g} CPU(s), {gpus:g} GPU(s)")
        for task in tasks:
            progress.started(task)
        with stop_on_signals() as stop:
            while pending and not stop:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=2.0)
                for ref in ready:
                    task, owed = pending.pop(ref)
                    try:
                        out = ray.get(ref)
                    except ray.exceptions.RayError as e:  # retries exhausted: record it, keep the others going
                        out = [fail_run(c, f"ray task failed: {type(e).__name__}") for c in task]
                    progress.run_steps(owed)
                    progress.finished(task, out)
            if stop:
                # a cancelled task's worker gets KeyboardInterrupt: it stops without saving, and its runs
                # resume from their last checkpoint; nothing is marked failed
                for ref in pending:
                    ray.cancel(ref)
                ray.wait(list(pending), num_returns=len(pending), timeout=60.0)
                raise Interrupted(stop.signum or 2, f"interrupted ({signal_name(stop.signum or 2)}): "
                                  f"{sum(len(t) for t, _ in pending.values())} run(s) cancelled on Ray")
    finally:
        if started_here:
            ray.shutdown()
