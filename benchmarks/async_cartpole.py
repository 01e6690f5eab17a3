"""Bar: each asynchronous method (Mnih et al. 2016) learns CartPole-v1 to a mean return >= 475
over the last 20 episodes within a stated budget of global env steps.

    python benchmarks/async_cartpole.py [--methods a3c,nstep_q,q,sarsa] [--seeds 3]
        [--total-steps 1000000] [--threads 2] [--envs-per-thread 8]

Each run uses the method's default config from `rlax-zoo train <method>` apart from the flags
above. Runs are not deterministic (thread interleaving), so the table gives several seeds.
Value-based threads explore with their own final epsilon (one in three draws 0.5), so their
training episodes understate what the shared parameters can do: after every chunk (40k global
steps) the shared parameters play one episode in each of 8 evaluation envs (greedy for the Q
methods, sampling pi for A3C). Prints the command, machine, versions, and per method and seed:
the first global step at which the evaluation mean reached the threshold, the same for the
mean of the last 20 training episodes, the best and final training means, the final
evaluation, updates per second and the wall time.
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
        f"\n| method | seed | first global step with evaluation mean >= {args.threshold:g} "
        f"| first with mean(last 20 training episodes) >= {args.threshold:g} "
        "| best / final training mean(last 20) | final evaluation | updates/s | wall s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    summary = {}
    for method in args.methods.split(","):
        for seed in range(args.seeds):
            changes = dict(
                seed=seed,
                threads=args.threads,
                total_steps=args.total_steps,
                segments_per_chunk=1000,
            )
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
            first = int(steps[hit[0]]) if len(hit) else "not reached"
            evals = [(int(r["env_steps"]), float(r["eval_return"])) for r in result.metrics]
            eval_hit = [s for s, v in evals if v >= args.threshold]
            eval_first = eval_hit[0] if eval_hit else "not reached"
            summary.setdefault(method, []).append(bool(eval_hit))
            ups = int(result.state.num_updates) / wall
            print(
                f"| {method} | {seed} | {eval_first} | {first} | {means.max():.1f} / "
                f"{means[-1]:.1f} | {evals[-1][1]:.1f} | {ups:,.0f} | {wall:.0f} |",
                flush=True,
            )
    for method, hits in summary.items():
        print(
            f"{method}: {sum(hits)}/{len(hits)} seeds' evaluations reached {args.threshold:g} "
            f"within {args.total_steps} global steps"
        )


if __name__ == "__main__":
    main()
