"""V-trace against no correction under an artificial policy lag (Espeholt et al. 2018, 5.3).

The fully jitted IMPALA (`architecture="jit"`, seeds vmapped) acts with the parameters of
`policy_lag` updates ago, so every trajectory is off-policy by exactly that many updates. For
each lag, the same run with `correction="vtrace"` and with `correction="none"` (every ratio
set to 1: the plain actor-critic loss on stale data). Reported: the mean over seeds of the
mean return of the last 100 training episodes, and the mean over the run of the 20-episode
mean (area under the curve), and the V-trace minus no-correction difference of the final means
with its standard error (Welch); curves plotted to `--plot`, per-seed numbers to `--json`.

    python benchmarks/impala_policy_lag.py [--lags 0 4 16 64 --seeds 3 --steps 500000]

The setting in which V-trace keeps learning where no correction collapses (RESULTS.md):

    python benchmarks/impala_policy_lag.py --lags 0 32 64 --seeds 16 --set seed=1 \
        clip_per_network=True entropy_cost=0.05 rollout_length=40 num_envs=2
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.dqn_cartpole import overrides_or_exit, trailing_means  # noqa: E402
from rlax_zoo import runner  # noqa: E402
from rlax_zoo.agents import impala  # noqa: E402


def curve(episodes_csv: str, seed: int, grid: np.ndarray) -> np.ndarray:
    """The 20-episode running mean of one seed's training returns, sampled on `grid` steps."""
    with open(episodes_csv) as f:
        steps, means = trailing_means(list(csv.DictReader(f)), seed)
    idx = np.searchsorted(steps, grid, side="right") - 1
    return np.where(idx >= 0, means[np.clip(idx, 0, None)], np.nan)


def difference(a, b) -> tuple[float, float]:
    """mean(a) - mean(b) and its standard error sqrt(var(a)/n_a + var(b)/n_b) (Welch)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        return float(a.mean() - b.mean()), float("nan")
    se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    return float(a.mean() - b.mean()), float(se)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lags", type=int, nargs="+", default=[0, 4, 16, 64])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=500_000)
    parser.add_argument("--plot", default="benchmarks/results/impala_policy_lag.png")
    parser.add_argument("--json", default=None, help="write per-seed results here")
    parser.add_argument("--out", default=None, help="run folders (default: a temp dir)")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="FIELD=VALUE",
        help="ImpalaConfig overrides for every run (e.g. optimizer_eps=0.01)",
    )
    args = parser.parse_args()
    print("command: python " + " ".join(sys.argv))
    root = args.out or tempfile.mkdtemp(prefix="impala_lag_")
    grid = np.linspace(0, args.steps, 101)[1:]
    fixed = dict(
        architecture="jit", num_seeds=args.seeds, total_steps=args.steps, iterations_per_chunk=250
    )
    varied = dict(policy_lag=max(args.lags), correction=impala.CORRECTIONS[0])
    overrides = overrides_or_exit(
        parser,
        impala.ImpalaConfig,
        args.set,
        impala.ImpalaConfig(**fixed, **varied),
        fixed=(*fixed, *varied),
    )
    results = {}
    for lag in args.lags:
        for correction in impala.CORRECTIONS:
            cfg = impala.ImpalaConfig(**fixed, policy_lag=lag, correction=correction, **overrides)
            t0 = time.perf_counter()
            res = runner.run(
                "impala",
                impala.make_impala,
                cfg,
                run_dir=os.path.join(root, f"lag{lag}-{correction}"),
                progress=False,
                plot=False,
            )
            final = [np.mean(r[-100:]) for r in res.episode_returns]
            curves = np.stack(
                [
                    curve(os.path.join(res.run_dir, "episodes.csv"), s, grid)
                    for s in range(args.seeds)
                ]
            )
            log_rho = np.mean([row["mean_abs_log_rho"] for row in res.metrics])
            results[lag, correction] = (final, curves)
            print(
                f"lag {lag:3d} {correction:6s}: last-100 mean per seed "
                + " ".join(f"{f:6.1f}" for f in final)
                + f" | mean {np.mean(final):6.1f} | area {np.nanmean(curves):6.1f}"
                + f" | mean |log rho| {log_rho:.3f} | {time.perf_counter() - t0:.0f}s",
                flush=True,
            )

    print()
    print(
        "| policy lag (updates) | V-trace: last-100 mean (area) "
        "| no correction: last-100 mean (area) | difference (standard error) |"
    )
    print("|---:|---:|---:|---:|")
    for lag in args.lags:
        cells = []
        for correction in impala.CORRECTIONS:
            final, curves = results[lag, correction]
            cells.append(f"{np.mean(final):.1f} ({np.nanmean(curves):.1f})")
        diff, se = difference(results[lag, "vtrace"][0], results[lag, "none"][0])
        print(f"| {lag} | " + " | ".join(cells) + f" | {diff:.1f} ({se:.1f}) |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "command": "python " + " ".join(sys.argv),
                    "rows": [
                        {
                            "lag": lag,
                            "correction": correction,
                            "final_per_seed": [float(x) for x in results[lag, correction][0]],
                            "area": float(np.nanmean(results[lag, correction][1])),
                        }
                        for lag in args.lags
                        for correction in impala.CORRECTIONS
                    ],
                },
                f,
                indent=1,
            )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(args.lags), figsize=(4 * len(args.lags), 3.4), sharey=True)
    for ax, lag in zip(np.atleast_1d(axes), args.lags, strict=True):
        for correction, color in zip(impala.CORRECTIONS, ("C0", "C3"), strict=True):
            _, curves = results[lag, correction]
            mean = np.nanmean(curves, 0)
            ax.plot(grid, mean, color=color, label=correction)
            ax.fill_between(
                grid, np.nanmin(curves, 0), np.nanmax(curves, 0), color=color, alpha=0.15
            )
        ax.set_title(f"policy lag {lag} updates")
        ax.set_xlabel("env steps per seed")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("20-episode mean return")
    np.atleast_1d(axes)[0].legend(title="correction")
    fig.suptitle(f"IMPALA on CartPole-v1, {args.seeds} seeds (band: min-max)")
    fig.tight_layout()
    os.makedirs(os.path.dirname(args.plot) or ".", exist_ok=True)
    fig.savefig(args.plot, dpi=110)
    print("plot:", args.plot)


if __name__ == "__main__":
    main()
