"""Bar: the default `rlax-zoo train dqn` config (double + dueling + prioritized) on CartPole-v1
reaches a mean return >= 475 over the last 20 episodes within 100k env steps, in >= 4 of 5
seeds trained at once (the agent vmapped over seeds, one envpool batch for all of them).

    python benchmarks/dqn_cartpole.py [--seeds 5] [--total-steps 100000] [--run-dir DIR]

Prints the command, machine, versions, and per seed: the first env step at which the mean of
the last 20 episodes reached the threshold, the best and the final such mean.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time

import numpy as np

from rlax_zoo import runner
from rlax_zoo.agents import dqn


def add_xla_cpu_threads_flag(parser, default: str = "1") -> None:
    """`--xla-cpu-threads N|all`: the size of XLA's CPU intra-op pool (`rlax_zoo.xla_cpu`)."""
    parser.add_argument(
        "--xla-cpu-threads",
        default=default,
        metavar="N",
        help=f"Threads of XLA's CPU intra-op pool, or 'all' for XLA's default (every CPU); "
        f"default {default}. Fixed for the whole process, peers included.",
    )


def apply_xla_cpu_threads(args) -> None:
    """Sizes XLA's CPU pool from `args.xla_cpu_threads` (before any JAX computation)."""
    from rlax_zoo import xla_cpu

    if args.xla_cpu_threads != "all":
        xla_cpu.configure_cpu_threads(int(args.xla_cpu_threads))


def overrides_or_exit(parser, cls, items, base=None, fixed=(), flag="--set") -> dict:
    """A benchmark's `FIELD=VALUE` items typed for the config class `cls` and validated on
    `base` (default `cls()`); an unknown field, a bad value or a field in `fixed` (one the
    benchmark sets itself) ends in `parser.error`: one line, exit 2, before any training."""
    from rlax_zoo import config as config_lib

    try:
        overrides = config_lib.parse_overrides(cls, items, flag)
        taken = sorted(set(overrides) & set(fixed))
        if taken:
            raise config_lib.ConfigError(
                f"{flag}: {taken} already set (by the benchmark itself, or by --set)"
            )
        config_lib.validate(dataclasses.replace(base if base is not None else cls(), **overrides))
    except config_lib.ConfigError as e:
        parser.error(str(e))
    return overrides


def interleaved_seconds(calls: dict, repeats: int) -> dict:
    """Seconds of each `calls[name](r)` (compiled before; it must block until its result is
    ready) over `repeats` rounds, the order reversed every other round so that neither side
    always runs first: name -> [repeats] list."""
    times = {name: [] for name in calls}
    for r in range(repeats):
        for name in list(calls) if r % 2 == 0 else list(calls)[::-1]:
            t0 = time.perf_counter()
            calls[name](r)
            times[name].append(time.perf_counter() - t0)
    return times


def machine_line() -> str:
    import envpool
    import flax
    import jax

    from rlax_zoo import xla_cpu

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores; python {platform.python_version()}, jax {jax.__version__}"
        f", flax {flax.__version__}, envpool {envpool.__version__}; XLA CPU intra-op threads: "
        f"{xla_cpu.configured_threads() or 'all (XLA default)'}"
    )


def trailing_means(episode_rows, seed, window=20):
    rows = [r for r in episode_rows if int(r["seed"]) == seed]
    steps = np.array([int(r["env_steps"]) for r in rows])
    rets = np.array([float(r["return"]) for r in rows])
    means = np.array([rets[max(0, i - window + 1) : i + 1].mean() for i in range(len(rets))])
    full = np.arange(len(rets)) >= window - 1  # only windows of a full 20 episodes count
    return steps[full], means[full]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--total-steps", type=int, default=100_000)
    p.add_argument("--threshold", type=float, default=475.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", default=None)
    add_xla_cpu_threads_flag(p)  # 1, as `rlax-zoo train dqn` picks for CartPole
    args = p.parse_args()
    apply_xla_cpu_threads(args)
    print("command: python " + " ".join(sys.argv))
    print("machine: " + machine_line())
    cfg = dqn.DQNConfig(num_seeds=args.seeds, total_steps=args.total_steps, seed=args.seed)
    t0 = time.perf_counter()
    result = runner.run("dqn", dqn.make_dqn, cfg, run_dir=args.run_dir, progress=False)
    wall = time.perf_counter() - t0
    import csv

    with open(os.path.join(result.run_dir, "episodes.csv")) as f:
        rows = list(csv.DictReader(f))
    reached = 0
    print(
        f"\nDQN default config, CartPole-v1, {args.total_steps} env steps per seed, "
        f"{args.seeds} seeds vmapped; wall time {wall:.0f} s (with compilation)\n"
    )
    thr = f"{args.threshold:g}"
    print(f"| seed | first step with mean(last 20) >= {thr} | best mean(last 20) | final |")
    print("|---|---|---|---|")
    for s in range(args.seeds):
        steps, means = trailing_means(rows, s)
        hit = np.nonzero(means >= args.threshold)[0]
        first = int(steps[hit[0]]) if len(hit) else None
        reached += first is not None
        best = float(means.max()) if len(means) else float("nan")
        final = float(means[-1]) if len(means) else float("nan")
        shown = first if first is not None else "not reached"
        print(f"| {s} | {shown} | {best:.1f} | {final:.1f} |")
    print(
        f"\nseeds reaching {args.threshold:g} within {args.total_steps} steps: "
        f"{reached}/{args.seeds}; run folder: {result.run_dir}"
    )


if __name__ == "__main__":
    main()
