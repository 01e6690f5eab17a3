"""Sutton & Barto (2018) Figure 6.5: Q-learning vs double Q-learning on the maximization-bias MDP.

Example 6.7: from A, "left" leads to B (reward 0), whose num_b_actions actions all terminate with
reward ~ N(-0.1, 1); "right" terminates with reward 0. epsilon-greedy (epsilon = 0.1),
alpha = 0.1, gamma = 1, all-zero initial Q tables, ties broken at random, averaged over many
independent runs (vmapped). The epsilon-greedy optimum goes left with probability epsilon / 2.

    python benchmarks/maximization_bias.py --runs 10000

Writes benchmarks/results/maximization_bias.png and prints the command, machine, versions, the
median wall time of --repeats timed repeats (after one compile run) and a markdown summary.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time

import jax
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rlax_zoo.agents.tabular import ALGORITHMS, run_maximization_bias  # noqa: E402

LABELS = {"q_learning": "Q-learning", "double_q_learning": "Double Q-learning"}
DEFAULT_OUTPUT = os.path.join(os.path.dirname(__file__), "results", "maximization_bias.png")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000, help="independent runs (vmapped)")
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--epsilon", type=float, default=0.1)
    parser.add_argument("--step-size", type=float, default=0.1)
    parser.add_argument("--discount", type=float, default=1.0)
    parser.add_argument("--num-b-actions", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats after compiling")
    parser.add_argument("--output", default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error(f"--runs must be >= 1, got {args.runs}")
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    return args


def machine_info() -> str:
    devices = ", ".join(str(d) for d in jax.devices())
    return (
        f"{platform.platform()} | {platform.processor() or platform.machine()} | "
        f"{os.cpu_count()} CPUs visible | devices: {devices} | python {sys.version.split()[0]}, "
        f"jax {jax.__version__}, numpy {np.__version__}, matplotlib {matplotlib.__version__}"
    )


def left_fraction_curve(args: argparse.Namespace, algorithm: str) -> tuple[np.ndarray, list]:
    """Mean over runs of "first action in A was left", [episodes]; and timed wall times."""

    def one_run(key):
        return run_maximization_bias(
            key,
            algorithm,
            args.episodes,
            epsilon=args.epsilon,
            step_size=args.step_size,
            discount=args.discount,
            num_b_actions=args.num_b_actions,
        )

    all_runs = jax.jit(lambda keys: jax.vmap(one_run)(keys).mean(axis=0))
    keys = jax.random.split(jax.random.key(args.seed), args.runs)
    start = time.perf_counter()
    curve = np.asarray(all_runs(keys))  # Compile + first run; the timed repeats reuse it.
    compile_and_run = time.perf_counter() - start
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        np.asarray(all_runs(keys))
        times.append(time.perf_counter() - start)
    return curve, [compile_and_run, *times]


def plot(curves: dict, args: argparse.Namespace) -> None:
    episodes = np.arange(1, args.episodes + 1)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = {"q_learning": "tab:red", "double_q_learning": "tab:green"}
    for algorithm, curve in curves.items():
        ax.plot(episodes, 100 * curve, color=colors[algorithm], label=LABELS[algorithm])
    ax.axhline(100 * args.epsilon / 2, color="black", linestyle="--", label="optimal")
    ax.set_xlabel("Episodes")
    ax.set_ylabel("% left actions from A")
    ax.set_xlim(1, args.episodes)
    ax.set_ylim(0, 100)
    ax.set_title(
        f"Maximization bias (S&B Fig. 6.5): {args.runs:,} runs, {args.num_b_actions} B-actions, "
        f"$\\epsilon$={args.epsilon}, $\\alpha$={args.step_size}"
    )
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    fig.savefig(args.output, dpi=120)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    print("command: python " + " ".join(shlex.quote(a) for a in sys.argv))
    print("machine: " + machine_info())
    curves, times = {}, {}
    for algorithm in ALGORITHMS:
        curves[algorithm], times[algorithm] = left_fraction_curve(args, algorithm)
    plot(curves, args)

    tail = min(100, args.episodes)
    q = curves["q_learning"]
    print()
    print(
        f"| algorithm | peak left % (episode) | mean left %, episodes 1-{min(50, args.episodes)} "
        f"| mean left %, last {tail} episodes | compile+run s | median run s ({args.repeats}x) |"
    )
    print("|---|---|---|---|---|---|")
    for algorithm, curve in curves.items():
        peak = int(np.argmax(curve))
        print(
            f"| {LABELS[algorithm]} | {100 * curve[peak]:.1f} ({peak + 1}) "
            f"| {100 * curve[:50].mean():.1f} | {100 * curve[-tail:].mean():.1f} "
            f"| {times[algorithm][0]:.2f} | {statistics.median(times[algorithm][1:]):.2f} |"
        )
    print()
    print(
        f"Q-learning peaks at {100 * q.max():.1f}% left at episode {int(np.argmax(q)) + 1}; "
        f"over the last {tail} episodes Q-learning goes left "
        f"{100 * q[-tail:].mean():.1f}% and double Q-learning "
        f"{100 * curves['double_q_learning'][-tail:].mean():.1f}% of the time "
        f"(epsilon-greedy optimum {100 * args.epsilon / 2:.1f}%). "
        f"Standard error of one episode's % over {args.runs:,} runs: <= "
        f"{100 * 0.5 / np.sqrt(args.runs):.2f} points."
    )
    print(f"plot: {args.output}")


if __name__ == "__main__":
    main()
