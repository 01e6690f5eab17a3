"""Bar: each asynchronous method (Mnih et al. 2016) learns CartPole-v1 to a mean return >= 475
over the last 20 episodes within a stated budget of global env steps.

    python benchmarks/async_cartpole.py [--methods a3c,nstep_q,q,sarsa] [--seeds 3]
        [--total-steps 1000000] [--threads 2] [--envs-per-thread 8]

Each run uses the method's default config from `rlax-zoo train <method>` apart from the flags
above. Runs are not deterministic (thread interleaving), so the table gives several seeds.
Prints the command, machine, versions, and per method and seed: the first global env step at
which the mean of the last 20 episodes reached the threshold, the best and final such means,
updates per second and the wall time.
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
from rlax_zoo.agents import async_methods as am  # noqa: E402

CONFIGS = {
    "q": am.AsyncQConfig,
    "sarsa": am.AsyncSarsaConfig,
    "nstep_q": am.AsyncNStepQConfig,
    "a3c": am.A3CConfig,
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", default="a3c,nstep_q,q,sarsa")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--total-steps", type=int, default=1_000_000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--envs-per-thread", type=int, default=None)
    p.add_argument("--threshold", type=float, default=475.0)
    p.add_argument("--root", default="runs/bench-async")
    args = p.parse_args()
    print("command: python " + " ".join(sys.argv))
    print("machine: " + machine_line())
    print(
        f"\n| method | seed | first global step with mean(last 20) >= {args.threshold:g} "
        "| best mean(last 20) | final | updates/s | wall s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    summary = {}
    for method in args.methods.split(","):
        for seed in range(args.seeds):
            changes = dict(seed=seed, threads=args.threads, total_steps=args.total_steps)
            if args.envs_per_thread is not None:
                changes["envs_per_thread"] = args.envs_per_thread
            cfg = dataclasses.replace(CONFIGS[method](), **changes)
            run_dir = os.path.join(args.root, f"{method}-seed{seed}-{time.time():.0f}")
            t0 = time.perf_counter()
            result = runner.run(method, am.make_async, cfg, run_dir=run_dir, progress=False)
            wall = time.perf_counter() - t0
            with open(os.path.join(result.run_dir, "episodes.csv")) as f:
                rows = list(csv.DictReader(f))
            steps, means = trailing_means(rows, 0)
            hit = np.nonzero(means >= args.threshold)[0]
            first = int(steps[hit[0]]) if len(hit) else None
            summary.setdefault(method, []).append(first is not None)
            ups = int(result.state.num_updates) / wall
            print(
                f"| {method} | {seed} | {first if first is not None else 'not reached'} "
                f"| {means.max():.1f} | {means[-1]:.1f} | {ups:,.0f} | {wall:.0f} |",
                flush=True,
            )
    for method, hits in summary.items():
        print(
            f"{method}: {sum(hits)}/{len(hits)} seeds reached {args.threshold:g} "
            f"within {args.total_steps} global steps"
        )


if __name__ == "__main__":
    main()
