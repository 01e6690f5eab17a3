"""Bar: IMPALA learns CartPole-v1 to a mean return >= 475 over the last 20 training episodes
within a stated budget of environment steps, with the default `rlax-zoo train impala` config.

    python benchmarks/impala_cartpole.py [--seeds 5] [--total-steps 1000000]
        [--architectures threads,jit]

`threads` (actor threads + queue + learner) runs one seed at a time; these runs are not
deterministic. `jit` trains all seeds at once (vmapped) and is deterministic. Per seed: the
first env step at which the mean of the last 20 training episodes reached the threshold, the
best and final such means, env steps per second and wall time.
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
from rlax_zoo.agents import impala  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--architectures", default="threads,jit")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--total-steps", type=int, default=1_000_000)
    p.add_argument("--threshold", type=float, default=475.0)
    p.add_argument("--root", default="runs/bench-impala")
    args = p.parse_args()
    print("command: python " + " ".join(sys.argv))
    print("machine: " + machine_line())
    print(
        f"\n| architecture | seed | first env step with mean(last 20) >= {args.threshold:g} "
        "| best / final mean(last 20) | env steps/s | wall s |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for arch in args.architectures.split(","):
        jobs = [(seed, 1) for seed in range(args.seeds)] if arch == "threads" else [(0, args.seeds)]
        hits = []
        for seed, num_seeds in jobs:
            cfg = dataclasses.replace(
                impala.ImpalaConfig(),
                architecture=arch,
                seed=seed,
                num_seeds=num_seeds,
                total_steps=args.total_steps,
            )
            run_dir = os.path.join(args.root, f"{arch}-seed{seed}-{time.time():.0f}")
            t0 = time.perf_counter()
            result = runner.run("impala", impala.make_impala, cfg, run_dir=run_dir, progress=False)
            wall = time.perf_counter() - t0
            with open(os.path.join(result.run_dir, "episodes.csv")) as f:
                rows = list(csv.DictReader(f))
            for s in range(num_seeds):
                steps, means = trailing_means(rows, s)
                hit = np.nonzero(means >= args.threshold)[0]
                hits.append(len(hit) > 0)
                first = int(steps[hit[0]]) if len(hit) else "not reached"
                sps = args.total_steps * num_seeds / wall
                print(
                    f"| {arch} | {seed + s} | {first} | {means.max():.1f} / {means[-1]:.1f} "
                    f"| {sps:,.0f} | {wall:.0f} |",
                    flush=True,
                )
        print(f"{arch}: {sum(hits)}/{len(hits)} seeds reached {args.threshold:g}")


if __name__ == "__main__":
    main()
