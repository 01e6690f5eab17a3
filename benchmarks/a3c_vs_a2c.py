"""A3C (asynchronous threads) against A2C (its synchronous, vmapped twin) on CartPole-v1, at
equal environment steps and at equal wall-clock time.

    python benchmarks/a3c_vs_a2c.py [--total-steps 1000000] [--seeds 3] [--threads 2]
        [--envs-per-thread 8]

Both use the same loss (Mnih et al. 2016, Algorithm S3: t_max = 5 step returns, value loss
0.5, advantages standardised per batch, RMSProp 1e-3 annealed to 0, gradient clip 0.5) and the
same data per update: A3C runs `threads` threads of `envs_per_thread` envs each, and each
thread's update uses its own 5 x envs_per_thread steps; A2C steps `envs_per_thread` envs in one
batch and updates once per 5 steps. Writes benchmarks/results/a3c_vs_a2c.png (mean
return of the last 20 episodes against env steps and against seconds) and prints a table of
the mean return at a few step counts and times.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.dqn_cartpole import machine_line, trailing_means  # noqa: E402
from rlax_zoo import runner  # noqa: E402
from rlax_zoo.agents import actor_critic as ac  # noqa: E402
from rlax_zoo.agents import async_methods as am  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def curve(run_dir: str):
    """(env steps, wall seconds, mean of last 20 returns) per finished episode (20 onwards)."""
    with open(os.path.join(run_dir, "episodes.csv")) as f:
        rows = list(csv.DictReader(f))
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        metrics = list(csv.DictReader(f))
    steps, means = trailing_means(rows, 0)
    chunk_steps = np.array([0] + [int(m["env_steps"]) for m in metrics], float)
    chunk_wall = np.array([0.0] + [float(m["wall_time"]) for m in metrics])
    return steps, np.interp(steps, chunk_steps, chunk_wall), means


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--total-steps", type=int, default=1_000_000)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--envs-per-thread", type=int, default=16)
    p.add_argument("--root", default="runs/bench-a3c-vs-a2c")
    args = p.parse_args()
    print("command: python " + " ".join(sys.argv))
    print("machine: " + machine_line())
    envs = args.envs_per_thread  # A2C's batch per update equals one A3C thread's
    common = dict(
        total_steps=args.total_steps,
        learning_rate=1e-3,
        anneal_learning_rate=True,
        max_grad_norm=0.5,
        entropy_cost=0.0,
        value_cost=0.5,
        normalize_advantages=True,
    )
    curves = {"A2C": [], "A3C": []}
    walls = {"A2C": [], "A3C": []}
    for seed in range(args.seeds):
        for name in ("A2C", "A3C"):
            if name == "A2C":
                cfg = dataclasses.replace(
                    ac.A2CConfig(),
                    seed=seed,
                    num_envs=envs,
                    rollout_length=5,
                    iterations_per_chunk=1000,
                    **common,
                )
                build = ac.make_a2c
            else:
                cfg = dataclasses.replace(
                    am.A3CConfig(),
                    seed=seed,
                    threads=args.threads,
                    envs_per_thread=args.envs_per_thread,
                    t_max=5,
                    segments_per_chunk=1000,
                    **common,
                )
                build = am.make_async
            run_dir = os.path.join(args.root, f"{name}-seed{seed}-{time.time():.0f}")
            t0 = time.perf_counter()
            runner.run(name.lower(), build, cfg, run_dir=run_dir, progress=False, plot=False)
            walls[name].append(time.perf_counter() - t0)
            curves[name].append(curve(run_dir))
            print(f"{name} seed {seed}: {walls[name][-1]:.0f} s", flush=True)

    step_marks = [args.total_steps // 4, args.total_steps // 2, args.total_steps]
    longest = max(max(walls["A2C"]), max(walls["A3C"]))
    time_marks = [5.0, 10.0, 20.0, round(longest)]

    def at(c, x, axis):
        xs = c[0] if axis == "steps" else c[1]
        i = np.searchsorted(xs, x, side="right") - 1
        return c[2][i] if i >= 0 else np.nan

    print(f"\nmean(last 20) averaged over {args.seeds} seeds; {envs} envs feed every update")
    print(
        "| method | "
        + " | ".join(f"{s:,} steps" for s in step_marks)
        + " | "
        + " | ".join(f"{t:g} s" for t in time_marks)
        + " | env steps/s |"
    )
    print("|---|" + "---:|" * (len(step_marks) + len(time_marks) + 1))
    for name, cs in curves.items():
        by_steps = [np.nanmean([at(c, s, "steps") for c in cs]) for s in step_marks]
        by_time = [np.nanmean([at(c, t, "time") for c in cs]) for t in time_marks]
        sps = args.total_steps / np.median(walls[name])
        print(
            f"| {name} | "
            + " | ".join(f"{v:.0f}" for v in by_steps)
            + " | "
            + " | ".join(f"{v:.0f}" for v in by_time)
            + f" | {sps:,.0f} |"
        )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, color in (("A2C", "tab:blue"), ("A3C", "tab:orange")):
        for i, (steps, wall, means) in enumerate(curves[name]):
            label = name if i == 0 else None
            axes[0].plot(steps, means, color=color, alpha=0.7, label=label)
            axes[1].plot(wall, means, color=color, alpha=0.7, label=label)
    axes[0].set_xlabel("environment steps")
    axes[1].set_xlabel("wall-clock seconds (including compilation)")
    for ax in axes:
        ax.set_ylabel("mean return, last 20 episodes")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"CartPole-v1: A3C ({args.threads} threads x {args.envs_per_thread} envs) "
        f"vs A2C ({envs} envs), {args.seeds} seeds"
    )
    fig.tight_layout()
    os.makedirs(RESULTS, exist_ok=True)
    out = os.path.join(RESULTS, "a3c_vs_a2c.png")
    fig.savefig(out, dpi=100)
    print(f"\nplot: {out}")


if __name__ == "__main__":
    main()
