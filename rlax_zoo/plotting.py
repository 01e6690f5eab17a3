"""Learning-curve plots written into run folders (matplotlib, Agg backend)."""

from __future__ import annotations

import numpy as np


def plot_learning_curve(episode_rows: list[dict], path: str, title: str = "", window: int = 20):
    """Episode return vs environment steps, one faint line per seed plus its running mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    seeds = sorted({int(r["seed"]) for r in episode_rows})
    for seed in seeds:
        rows = [r for r in episode_rows if int(r["seed"]) == seed]
        steps = np.array([float(r["env_steps"]) for r in rows])
        rets = np.array([float(r["return"]) for r in rows])
        order = np.argsort(steps, kind="stable")
        steps, rets = steps[order], rets[order]
        line = ax.plot(steps, rets, alpha=0.2)[0]
        if len(rets) >= 1:
            kernel = np.ones(min(window, len(rets)))
            smooth = np.convolve(rets, kernel, "valid") / len(kernel)
            ax.plot(steps[len(kernel) - 1 :], smooth, color=line.get_color(), label=f"seed {seed}")
    ax.set_xlabel("environment steps")
    ax.set_ylabel(f"episode return (mean of last {window})")
    ax.set_title(title)
    if seeds:
        ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
