"""Per-bin learning tables of run folders, and their binned curves on one plot.

Reads each run folder's `episodes.csv` (written by every `rlax-zoo train` method) and prints,
for each bin of `--bin` environment steps, the episodes that ended in it, their mean return
and mean length: the tables of benchmarks/RESULTS.md's Atari sections. With `--plot`, the
binned mean returns of all runs go on one figure (one line per run folder, labelled by
`--labels` or the folder's name).

    python benchmarks/run_table.py runs/impala-breakout-s11 runs/impala-breakout-rmsprop-s9 \
        --bin 250000 --plot benchmarks/results/impala_breakout_s11.png
"""

from __future__ import annotations

import argparse
import csv
import os

import numpy as np


def binned(episodes_csv: str, bin_steps: int, seed: int = 0) -> list[tuple]:
    """[(bin start, bin end, episodes, mean return, mean length)] of one seed's episodes,
    binned by the env-step count at which each ended; empty bins are left out."""
    if not os.path.exists(episodes_csv):
        raise SystemExit(f"run_table: no episodes.csv at {episodes_csv}")
    with open(episodes_csv) as f:
        rows = [r for r in csv.DictReader(f) if int(r["seed"]) == seed]
    if not rows:
        return []
    steps = np.array([float(r["env_steps"]) for r in rows])
    rets = np.array([float(r["return"]) for r in rows])
    lens = np.array([float(r["length"]) for r in rows])
    out = []
    for b in range(int(steps.max()) // bin_steps + 1):
        sel = (steps >= b * bin_steps) & (steps < (b + 1) * bin_steps)
        if sel.any():
            lo, hi = b * bin_steps, (b + 1) * bin_steps
            out.append((lo, hi, int(sel.sum()), rets[sel].mean(), lens[sel].mean()))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run folders")
    p.add_argument("--bin", type=int, default=250_000, help="environment steps per bin")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--labels", nargs="*", default=None)
    p.add_argument("--plot", default=None, help="write the binned curves here (PNG)")
    args = p.parse_args()
    if args.bin < 1:
        p.error(f"--bin must be >= 1, got {args.bin}")
    labels = args.labels or [os.path.basename(os.path.normpath(r)) for r in args.runs]
    if len(labels) != len(args.runs):
        p.error(f"--labels: {len(labels)} labels for {len(args.runs)} run folders")
    tables = [binned(os.path.join(r, "episodes.csv"), args.bin, args.seed) for r in args.runs]
    for label, table in zip(labels, tables, strict=True):
        print(
            f"\n{label}\n| env steps | episodes | mean return | mean length |\n|---|---:|---:|---:|"
        )
        for lo, hi, n, ret, length in table:
            print(f"| {lo // 1000}k-{hi // 1000}k | {n:,} | {ret:.3f} | {length:.1f} |")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for label, table in zip(labels, tables, strict=True):
            if table:
                mids = [(lo + hi) / 2 for lo, hi, *_ in table]
                ax.plot(mids, [t[3] for t in table], marker="o", label=label)
        ax.set_xlabel("environment steps")
        ax.set_ylabel(f"mean episode return per {args.bin:,} steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)
        print(f"\nwrote {args.plot}")


if __name__ == "__main__":
    main()
