"""The Python driver shared by every method: chunks of jitted steps, logs, checkpoints.

A method provides a trainer with:
  config, vec_env                          the validated config and the envpool env
  init_state() -> state                    the initial state pytree (leading seed axis)
  schedule() -> list[(learn, iterations)]  the run's chunks, fixed by the config alone
  run_chunk(handle, state, learn, n)       one jitted chunk -> (handle, state, out)
  summarize(out) -> agents.base.ChunkSummary  per-seed finished episodes and scalar metrics
  steps_per_iteration                      env steps per seed in one iteration

The run folder holds config.json, metrics.csv (one row per chunk and seed), episodes.csv
(one row per finished episode), learning_curve.png and checkpoints/. A run is reproducible:
same seed and config, same metrics. Resuming (`resume=RUN_DIR`) restores the newest
checkpoint, rebuilds the envs by replaying the logged actions (envpool is deterministic
given its seed and the actions) and checks that the replayed observations equal the saved
ones, so an interrupted and resumed run equals an uninterrupted one. Ctrl-C finishes the
chunk in flight, writes a checkpoint and exits.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import json
import os
import signal
import time
from typing import Any

import jax
import numpy as np

from rlax_zoo import config as config_lib
from rlax_zoo.checkpointing import Checkpointer, CheckpointError
from rlax_zoo.envs.envpool_env import replay_actions

EPISODE_FIELDS = ["seed", "episode", "env_steps", "return", "length"]


@dataclasses.dataclass
class RunResult:
    run_dir: str
    episode_returns: list[list[float]]  # per seed, in order
    metrics: list[dict]
    interrupted: bool
    state: Any
    out_of_time: bool = False  # stopped early by config.time_budget_s (checkpointed)
    train_seconds: float = 0.0  # seconds in run_chunk, over every call (resumes included)


def default_run_dir(method: str, config, root: str = "runs", label: str | None = None) -> str:
    """runs/<method>-<label>-seed<seed>-<timestamp>: a fresh folder name per run, to the
    microsecond. label: what the run learns from (default config.env_id; "" for none)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    label = getattr(config, "env_id", "run") if label is None else label
    parts = [method] + ([label.replace("/", "_")] if label else []) + [f"seed{config.seed}", stamp]
    return os.path.join(root, "-".join(parts))


def read_csv(path: str, numbers: tuple[str, ...] = ()) -> list[dict]:
    """The rows of a run's CSV log ([] if there is none); a row whose `numbers` columns do
    not all hold numbers raises CheckpointError naming the file and line."""
    if not os.path.exists(path):
        return []
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        for row in reader:
            for column in numbers:
                try:
                    float(row[column])
                except (KeyError, TypeError, ValueError):
                    raise CheckpointError(
                        f"resume: {path} line {reader.line_num} has no number in column "
                        f"{column!r}: the log is damaged (move it aside to resume without it)"
                    ) from None
            rows.append(row)
    return rows


def write_csv(path: str, rows: list[dict], fields: list[str] | None = None) -> None:
    """Write rows as a CSV with a header, atomically (a temporary file, then a rename)."""
    fields = fields or list(dict.fromkeys(k for r in rows for k in r))
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def append_csv(path: str, rows: list[dict], start: int, fields: list[str] | None = None) -> int:
    """Append rows[start:] (the whole file when start == 0); returns len(rows)."""
    if start == 0 or not os.path.exists(path):
        write_csv(path, rows, fields)
    elif start < len(rows):
        fields = fields or list(dict.fromkeys(k for r in rows for k in r))
        with open(path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=fields).writerows(rows[start:])
    return len(rows)


class StopFlag:
    """SIGINT sets a flag; the loop checkpoints after the chunk in flight and exits."""

    def __init__(self):
        self.stop = False
        self._old = None

    def __enter__(self):
        def handler(signum, frame):  # noqa: ARG001
            if self.stop:  # a second Ctrl-C: give up at once
                raise KeyboardInterrupt
            self.stop = True
            print("\nCtrl-C: finishing the current chunk, then checkpointing and exiting.")

        try:
            self._old = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread
            self._old = None
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def run(
    method: str,
    build_trainer,
    config=None,
    run_dir: str | None = None,
    resume: str | None = None,
    progress: bool = True,
    max_chunks: int | None = None,
    plot: bool = True,
) -> RunResult:
    """Train `method` with `build_trainer(config)` in a run folder; see the module doc.

    Args:
      method: the method's name (folder prefix).
      build_trainer: config -> trainer (see module doc). Must validate the config.
      config: the method's config dataclass (ignored when resuming: the run's own is used).
      run_dir: where to write; default runs/<method>-<env>-seed<seed>-<time>.
      resume: a run folder to continue from its newest checkpoint.
      progress: show a progress bar.
      max_chunks: stop (with a checkpoint, like Ctrl-C) after this many chunks in this call.
      plot: write learning_curve.png at the end.
    A config with `time_budget_s` > 0 ends the run, checkpointed and not interrupted, before a
    chunk that would take its training time (over every call, resumes included) past it;
    `out_of_time` and status.json then say so.
    """
    if resume is not None:
        run_dir = resume
        cfg_path = os.path.join(run_dir, "config.json")
        if not os.path.exists(cfg_path):
            raise CheckpointError(f"resume: {run_dir!r} is not a run folder (no config.json)")
        with open(cfg_path) as f:
            config = config_lib.from_json(type(config), f.read(), cfg_path)
    else:
        config_lib.validate(config)
        run_dir = run_dir or default_run_dir(method, config)
        if getattr(config, "process_id", 0):  # a multi-process run: one folder per process
            run_dir = f"{run_dir.rstrip(os.sep)}{_PROCESS_SUFFIX}{config.process_id}"
        if os.path.exists(os.path.join(run_dir, "config.json")):
            raise FileExistsError(
                f"run_dir: {run_dir!r} already holds a run; pass resume={run_dir!r} to continue"
            )
    os.makedirs(run_dir, exist_ok=True)
    trainer = build_trainer(config)
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        f.write(config_lib.to_json(config))

    state = trainer.init_state()
    # exact resume replays the action log through envpool; trainers whose runs cannot be
    # replayed (asynchronous threads) set exact_resume = False and resume with fresh envs
    exact = getattr(trainer, "exact_resume", True)
    handle = trainer.vec_env.handle if exact else None
    checkpointer = Checkpointer(os.path.join(checkpoint_root(run_dir, config), "checkpoints"))
    schedule = trainer.schedule()
    chunk_index, actions_log, train_seconds = 0, [], 0.0
    metrics_rows: list[dict] = []
    episode_rows: list[dict] = []
    if resume is not None:

        def target(meta):
            if not exact:
                return {"state": state}
            return {
                "state": state,
                "actions": np.zeros((meta["num_logged"], trainer.vec_env.num_envs), np.int32),
            }

        restored, meta, _ = checkpointer.restore(target)
        state = jax.tree.map(jax.numpy.asarray, restored["state"])
        chunk_index = int(meta["chunk"])
        train_seconds = float(meta.get("train_seconds", 0.0))
        if exact:
            log = np.asarray(restored["actions"], np.int32)
            actions_log = [log]
            handle, obs = replay_actions(trainer.vec_env, log)
            saved_obs = np.asarray(state.obs).reshape(obs.shape)
            if not np.array_equal(obs, saved_obs):
                raise CheckpointError(
                    "resume: replaying the logged actions did not reproduce the saved "
                    "observations (is this the same envpool version and env?)"
                )
        metrics_rows = [
            r
            for r in read_csv(os.path.join(run_dir, "metrics.csv"), ("chunk",))
            if int(r["chunk"]) < chunk_index
        ]
        episode_rows = read_csv(
            os.path.join(run_dir, "episodes.csv"), ("env_steps", "seed", "return")
        )
        episode_rows = [r for r in episode_rows if int(r["env_steps"]) <= meta["env_steps"]]

    metrics_path = os.path.join(run_dir, "metrics.csv")
    episodes_path = os.path.join(run_dir, "episodes.csv")
    written_metrics = written_episodes = 0  # a resumed run rewrites its (truncated) files once
    num_seeds = getattr(config, "num_seeds", 1)
    episode_returns = [[] for _ in range(num_seeds)]
    for r in episode_rows:
        episode_returns[int(r["seed"])].append(float(r["return"]))
    env_steps = sum(n for _, n in schedule[:chunk_index]) * trainer.steps_per_iteration
    total_steps = sum(n for _, n in schedule) * trainer.steps_per_iteration

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, initial=env_steps, unit="step", desc=method, smoothing=0.1)
    interrupted = out_of_time = False
    budget = getattr(config, "time_budget_s", 0.0)
    start_wall = time.perf_counter()
    chunks_this_call = 0

    def save():
        meta = {"chunk": chunk_index, "env_steps": env_steps, "train_seconds": train_seconds}
        if not exact:
            checkpointer.save(chunk_index, {"state": state}, dict(meta, num_logged=0))
            return
        log = (
            np.concatenate(actions_log, axis=0)
            if actions_log
            else np.zeros((0, trainer.vec_env.num_envs), np.int32)
        )
        meta["num_logged"] = int(log.shape[0])
        checkpointer.save(chunk_index, {"state": state, "actions": log}, meta)

    with StopFlag() as flag:
        while chunk_index < len(schedule):
            learn, iters = schedule[chunk_index]
            t0 = time.perf_counter()
            handle, state, out = trainer.run_chunk(handle, state, learn, iters)
            jax.block_until_ready(state)
            dt = time.perf_counter() - t0
            train_seconds += dt
            if exact:
                actions_log.append(np.asarray(out.actions))
            summary = trainer.summarize(out)
            for name, values in summary.scalars.items():
                if not np.all(np.isfinite(values)):
                    raise FloatingPointError(
                        f"{name} became {values} in chunk {chunk_index} (env step {env_steps}): "
                        "training diverged; nothing was checkpointed after the last finite "
                        "chunk. Lower learning_rate or max_grad_norm and start again."
                    )
            steps_in_chunk = iters * trainer.steps_per_iteration
            for seed_i in range(num_seeds):
                for step_idx, ret, length in summary.episodes[seed_i]:
                    episode_returns[seed_i].append(float(ret))
                    episode_rows.append(
                        dict(
                            seed=seed_i,
                            episode=len(episode_returns[seed_i]),
                            env_steps=env_steps + int(step_idx),
                            **{"return": float(ret)},
                            length=int(length),
                        )
                    )
            env_steps += steps_in_chunk
            for seed_i in range(num_seeds):
                last = episode_returns[seed_i][-20:]
                row = dict(
                    chunk=chunk_index,
                    seed=seed_i,
                    env_steps=env_steps,
                    episodes=len(episode_returns[seed_i]),
                    mean_return_last20=float(np.mean(last)) if last else float("nan"),
                    steps_per_sec=steps_in_chunk * num_seeds / dt,
                    wall_time=time.perf_counter() - start_wall,
                )
                for name, values in summary.scalars.items():
                    row[name] = float(values[seed_i])
                metrics_rows.append(row)
            chunk_index += 1
            chunks_this_call += 1
            if bar is not None:
                mean_ret = np.nanmean([r["mean_return_last20"] for r in metrics_rows[-num_seeds:]])
                bar.set_postfix(
                    ret=f"{mean_ret:.1f}", sps=f"{steps_in_chunk * num_seeds / dt:,.0f}"
                )
                bar.update(steps_in_chunk)
            # append only what is new (rewriting whole files each chunk is quadratic)
            written_metrics = append_csv(metrics_path, metrics_rows, written_metrics)
            written_episodes = append_csv(
                episodes_path, episode_rows, written_episodes, EPISODE_FIELDS
            )
            stop_now = flag.stop or (max_chunks is not None and chunks_this_call >= max_chunks)
            out_of_time = past_budget(budget, train_seconds, dt, chunk_index < len(schedule))
            # processes of a multi-process run stop together, or the others would wait in the
            # next collective (the learner's update, the checkpoint) forever
            stop_now, out_of_time = any_process(stop_now, out_of_time)
            if stop_now and chunk_index < len(schedule):
                save()
                interrupted = True
                break
            if (
                chunk_index % config.checkpoint_every == 0
                or chunk_index == len(schedule)
                or out_of_time
            ):
                save()
            if out_of_time:
                print(
                    f"time budget of {budget:g} s reached after {train_seconds:.0f} s of training"
                )
                break
    if bar is not None:
        bar.close()
    if plot:
        from rlax_zoo.plotting import plot_learning_curve

        plot_learning_curve(
            episode_rows,
            os.path.join(run_dir, "learning_curve.png"),
            title=f"{method} on {getattr(config, 'env_id', '')}",
        )
    with open(os.path.join(run_dir, "status.json"), "w") as f:
        json.dump(
            {
                "interrupted": interrupted,
                "out_of_time": out_of_time,
                "chunk": chunk_index,
                "env_steps": env_steps,
                "train_seconds": float(train_seconds),
            },
            f,
        )
    return RunResult(
        run_dir, episode_returns, metrics_rows, interrupted, state, out_of_time, train_seconds
    )


def any_process(*flags: bool) -> tuple[bool, ...]:
    """Each flag OR-ed over the processes of a multi-process run (one small all-gather; the
    flags themselves in a single process)."""
    if jax.process_count() == 1:
        return tuple(bool(f) for f in flags)
    from jax.experimental import multihost_utils

    gathered = multihost_utils.process_allgather(np.asarray(flags, np.int32))
    return tuple(bool(f) for f in np.asarray(gathered).reshape(-1, len(flags)).max(axis=0))


def past_budget(budget: float, train_seconds: float, last_chunk: float, more_left: bool) -> bool:
    """Whether a run with `more_left` chunks should stop before the next: with a budget
    (seconds, 0: none), when one more chunk as long as the last would pass it."""
    return bool(budget) and more_left and bool(train_seconds + last_chunk > budget)


# ---------------------------------------------------------------------------------------
# The same run folder for methods that are not environment loops (PR-SSM, DDPM): a config,
# chunks of jitted optimisation steps, metrics.csv, checkpoints, resume and Ctrl-C.


_PROCESS_SUFFIX = "-process"


def checkpoint_root(run_dir: str, config) -> str:
    """The run folder whose checkpoints/ a process saves to and restores from.

    A multi-process run (`config.process_id` k > 0) keeps its metrics in `<run_dir>-processk`
    but shares process 0's checkpoints, the way orbax checkpoints across hosts: every process
    joins each save and restore, process 0 writes the (replicated) learner state. Across hosts
    that folder must be on a shared file system."""
    k = getattr(config, "process_id", 0)
    suffix = f"{_PROCESS_SUFFIX}{k}"
    if k and run_dir.rstrip(os.sep).endswith(suffix):
        return run_dir.rstrip(os.sep)[: -len(suffix)]
    return run_dir


def prepare_run_dir(
    config_cls, config, run_dir: str | None, resume: str | None, default: str, load=None
):
    """Resolve (config, run_dir, loaded): a resumed run's own config.json, or a validated
    `config` written into a new folder (`default` when run_dir is None; an existing run is
    refused). `load(config)`, when given, reads the run's data before a new folder is made,
    so that bad data (a missing file) leave no folder behind; `loaded` is its result (None
    without `load`)."""
    if resume is not None:
        path = os.path.join(resume, "config.json")
        if not os.path.exists(path):
            raise CheckpointError(f"resume: {resume!r} is not a run folder (no config.json)")
        with open(path) as f:
            config = config_lib.from_json(config_cls, f.read(), path)
        config_lib.validate(config)
        return config, resume, load(config) if load is not None else None
    config = config if config is not None else config_cls()
    config_lib.validate(config)
    run_dir = run_dir or default
    if os.path.exists(os.path.join(run_dir, "config.json")):
        raise FileExistsError(
            f"run_dir: {run_dir!r} already holds a run; pass resume={run_dir!r} to continue"
        )
    loaded = load(config) if load is not None else None
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        f.write(config_lib.to_json(config))
    return config, run_dir, loaded


def drive_config_chunks(
    run_dir: str,
    config,
    state,
    train_chunk,
    after_chunk,
    resume: bool,
    max_chunks,
    what="the loss",
    on_restore=None,
) -> ChunkLoop:
    """`drive_chunks` as a chunked trainer's config sets it: `config.iterations` steps in
    chunks of `config.eval_every`, a checkpoint every `config.checkpoint_every` chunks, and
    `config.time_budget_s` seconds of training at most. `train_chunk(state, n)` runs n steps:
    (state, metrics dict of arrays)."""
    return drive_chunks(
        run_dir,
        state,
        chunk_sizes(config.iterations, config.eval_every),
        lambda n: lambda s: train_chunk(s, n),
        after_chunk,
        resume=resume,
        max_chunks=max_chunks,
        checkpoint_every=config.checkpoint_every,
        what=what,
        time_budget=config.time_budget_s,
        on_restore=on_restore,
    )


def write_results(run_dir: str, loop: ChunkLoop, iterations: int, **more) -> dict:
    """results.json of a finished chunked run (`drive_chunks`' loop): the steps reached, the
    training seconds and whether the time budget ended it, then `more`. Returns the dict."""
    results = dict(
        iterations=iterations, train_seconds=loop.train_seconds, out_of_time=loop.out_of_time
    )
    results.update(more)
    with open(os.path.join(run_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    return results


def finished_run_config(
    config_cls, run_dir: str, changes: dict, evaluation_fields: tuple, caller: str, rerun: str
):
    """The config of a finished run (its folder holds results.json) with `changes` to the
    fields in `evaluation_fields` applied and validated: what an evaluation of the trained
    model (`caller`) may change. A training field raises ConfigError naming it; an
    unfinished run raises CheckpointError saying to finish it with `rerun(resume=...)`."""
    training = sorted(set(changes) - set(evaluation_fields))
    if training:
        raise config_lib.ConfigError(
            f"{training[0]}: changes the training, so a trained run cannot be evaluated with "
            f"it; {caller} changes only {', '.join(evaluation_fields)}"
        )
    if not os.path.exists(os.path.join(run_dir, "results.json")):
        raise CheckpointError(
            f"run_dir: {run_dir!r} holds no finished run (no results.json); finish it with "
            f"{rerun}(resume={run_dir!r}) first"
        )
    config, _, _ = prepare_run_dir(config_cls, None, None, run_dir, "", None)
    return config_lib.replace_given(config, **changes)


def chunk_sizes(total: int, every: int) -> list[int]:
    """`total` steps in chunks of `every` (the last one shorter if it does not divide)."""
    sizes = [every] * (total // every)
    return sizes + ([total % every] if total % every else [])


@dataclasses.dataclass
class ChunkRun:
    """What a chunked (non-environment) run returns; `describe()` words finished results."""

    run_dir: str
    results: dict  # empty when interrupted
    metrics: list[dict]
    interrupted: bool
    state: Any

    def describe(self) -> str:
        raise NotImplementedError

    def summary(self) -> str:
        if self.interrupted:
            return f"interrupted (resume with --resume {self.run_dir})"
        return self.describe()


@dataclasses.dataclass
class ChunkLoop:
    state: Any
    rows: list[dict]
    interrupted: bool
    train_seconds: float
    ran_chunks: int  # chunks run in this call
    out_of_time: bool = False  # stopped early by `time_budget` (checkpointed, not interrupted)


def drive_chunks(
    run_dir: str,
    state,
    sizes: list[int],
    train_fn,
    after_chunk,
    resume: bool,
    max_chunks: int | None,
    checkpoint_every: int,
    what: str = "the loss",
    time_budget: float = 0.0,
    on_restore=None,
) -> ChunkLoop:
    """Run `state, metrics = train_fn(n)(state)` for each chunk size n, checkpointing.

    Args:
      train_fn: n -> a jitted function state -> (state, metrics dict of arrays).
      after_chunk: (state, chunk_index, metrics as NumPy, seconds, total train seconds) ->
        rows for metrics.csv (each with a "chunk" key); may print progress.
      resume: restore the newest checkpoint of run_dir first (its rows are kept).
      max_chunks: stop like Ctrl-C after this many chunks in this call.
      time_budget: seconds of training (0: no limit). The loop ends, checkpointed and not
        interrupted, before a chunk that would take the total past it, judging by the last
        chunk's time; `out_of_time` then says so.
      on_restore: state -> state, applied to a restored checkpoint before training goes on
        (e.g. to reconnect a live environment that a checkpoint cannot hold).
    Metrics must stay finite: a NaN or inf raises FloatingPointError naming `what`, before
    anything is checkpointed.
    """
    checkpointer = Checkpointer(os.path.join(run_dir, "checkpoints"))
    metrics_path = os.path.join(run_dir, "metrics.csv")
    chunk_index, train_seconds, rows = 0, 0.0, []
    if resume:
        template = state
        restored, meta, _ = checkpointer.restore(lambda meta: {"state": template})
        state = jax.tree.map(jax.numpy.asarray, restored["state"])
        if on_restore is not None:
            state = on_restore(state)
        chunk_index, train_seconds = int(meta["chunk"]), float(meta["train_seconds"])
        rows = [r for r in read_csv(metrics_path, ("chunk",)) if int(r["chunk"]) < chunk_index]

    def save():
        meta = {"chunk": chunk_index, "train_seconds": train_seconds}
        checkpointer.save(chunk_index, {"state": state}, meta)

    written, ran, interrupted, out_of_time = 0, 0, False, False
    with StopFlag() as flag:
        while chunk_index < len(sizes):
            t0 = time.perf_counter()
            state, metrics = train_fn(sizes[chunk_index])(state)
            jax.block_until_ready(state)
            dt = time.perf_counter() - t0
            train_seconds += dt
            metrics = jax.tree.map(np.asarray, metrics)
            if not all(np.all(np.isfinite(v)) for v in metrics.values()):
                raise FloatingPointError(
                    f"{what} became non-finite in chunk {chunk_index}: nothing was "
                    "checkpointed after the last finite chunk; lower learning_rate or "
                    "max_grad_norm and start again"
                )
            rows.extend(after_chunk(state, chunk_index, metrics, dt, train_seconds))
            chunk_index += 1
            ran += 1
            written = append_csv(metrics_path, rows, written)
            stop = flag.stop or (max_chunks is not None and ran >= max_chunks)
            if stop and chunk_index < len(sizes):
                save()
                interrupted = True
                break
            out_of_time = past_budget(time_budget, train_seconds, dt, chunk_index < len(sizes))
            if chunk_index % checkpoint_every == 0 or chunk_index == len(sizes) or out_of_time:
                save()
            if out_of_time:
                break
    return ChunkLoop(state, rows, interrupted, train_seconds, ran, out_of_time)
