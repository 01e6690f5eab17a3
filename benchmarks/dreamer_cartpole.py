"""DreamerV3 (Hafner et al. 2023) on CartPole-v1: environment steps and seconds to 475.

    python benchmarks/dreamer_cartpole.py [--seeds 0,1,2] [--set field=value ...]
        [--target 475] [--out JSON]
    python benchmarks/dreamer_cartpole.py --set envpool=true env_id=Acrobot-v1 --target -100

Trains `rlax-zoo train dreamer`'s config (plus --set overrides) once per seed, one process
after another, and reads each run's metrics.csv (one row per chunk of `eval_every`
iterations). The learning bar of the model-free CartPole benchmarks in RESULTS.md is the mean
return of the last 20 episodes reaching 475; here episodes are counted per chunk, so the
criterion is the mean return of the episodes that ended in the fewest trailing chunks holding
at least 20 of them, checked at every chunk's end. Reported per seed: the environment steps
and training seconds when it first reaches 475 (`--target`: another return, for another
environment), its best and its final value. The environment steps include the prefill
(random actions).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.dqn_cartpole import machine_line, overrides_or_exit  # noqa: E402
from rlax_zoo.agents.dreamer import DreamerConfig, run_dreamer  # noqa: E402


def trailing_means(rows: list[dict], episodes: int = 20) -> list[float]:
    """At each chunk: the mean return of the episodes that ended in the fewest trailing
    chunks (this one and earlier) holding at least `episodes` episodes; nan until then."""
    out = []
    for i in range(len(rows)):
        count, total = 0, 0.0
        for row in reversed(rows[: i + 1]):
            n = int(row["episodes_in_chunk"])
            if n:
                count += n
                total += n * float(row["mean_return"])
            if count >= episodes:
                break
        out.append(total / count if count >= episodes else float("nan"))
    return out


def summarise(seed: int, rows: list[dict], results: dict, target: float) -> dict:
    means = trailing_means(rows)
    first = next((i for i, m in enumerate(means) if m >= target), None)
    finite = [m for m in means if m == m]
    return dict(
        seed=seed,
        target=target,
        steps_to_target=None if first is None else int(rows[first]["env_steps"]),
        seconds_to_target=None if first is None else float(rows[first]["train_seconds"]),
        best_mean20=max(finite) if finite else None,
        final_mean20=means[-1] if means else None,
        env_steps=results.get("env_steps"),
        train_seconds=results.get("train_seconds"),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="0,1,2", help="Comma-separated seeds, one run each.")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE")
    p.add_argument("--run-dir", default=None, help="Folder for the runs (default: a temp dir).")
    p.add_argument("--target", type=float, default=475.0, help="The mean return to reach.")
    p.add_argument("--out", default=None, help="Write the results as JSON here.")
    args = p.parse_args()
    overrides = overrides_or_exit(p, DreamerConfig, args.set, fixed=("seed",))
    print("command: python " + " ".join(sys.argv))
    print("machine: " + machine_line())
    root = args.run_dir or tempfile.mkdtemp(prefix="dreamer-bench-")
    runs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        config = DreamerConfig(**{**overrides, "seed": seed})
        run = run_dreamer(config, run_dir=os.path.join(root, f"seed{seed}"))
        print(f"seed {seed}: {run.summary()}", flush=True)
        runs.append(summarise(seed, run.metrics, run.results, args.target))
        print(json.dumps(runs[-1]), flush=True)
    goal = f"{args.target:g}"
    print(f"| seed | env steps to {goal} | seconds to {goal} | best mean(20) | final mean(20) |")
    print("|---:|---:|---:|---:|---:|")

    def fmt(v, spec):
        return "not reached" if v is None else format(v, spec)

    for r in runs:
        print(
            f"| {r['seed']} | {fmt(r['steps_to_target'], ',')} "
            f"| {fmt(r['seconds_to_target'], '.0f')} "
            f"| {fmt(r['best_mean20'], '.1f')} | {fmt(r['final_mean20'], '.1f')} |"
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(overrides=overrides, runs=runs), f, indent=2)


if __name__ == "__main__":
    main()
