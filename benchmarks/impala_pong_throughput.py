"""IMPALA throughput on Atari Pong-v5: frames per second per CPU core, and where time goes.

Runs our threaded IMPALA (`rlax_zoo.agents.impala`, actor threads + queue + learner) on
Pong-v5 (envpool, frame skip 4: one agent step = 4 frames) for `--updates` learner updates per
repeat, after one warm-up chunk that compiles everything. Reported per repeat, median over
`--repeats`:

* frames/s consumed by the learner (agent steps x 4 / wall seconds), and per CPU core;
* the learner's split: time updating vs time waiting for trajectories, and the actors' busy
  time (seconds inside their jitted rollouts, summed over actor threads) per wall second;
* the policy lag;
* the ceiling: envpool's raw `env.xla()` stepping of the same number of envs with random
  actions (no network), in frames/s.

The paper's single-machine IMPALA: 17K frames/s on 48 CPU cores (about 354 per core).

    python benchmarks/impala_pong_throughput.py [--actors 2 --num-envs 8 --rollout-length 20
        --batch-size 2 --torso impala_shallow --updates 30 --repeats 3]

The network has one torso shared by the policy and value heads (the paper's, and Cleanba's).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.dqn_cartpole import machine_line  # noqa: E402
from benchmarks.dqn_pong import FRAME_SKIP, raw_env_fps  # noqa: E402
from rlax_zoo.agents import impala  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="Pong-v5")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--num-envs", type=int, default=8, help="envs per actor")
    parser.add_argument("--rollout-length", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--queue-size", type=int, default=2)
    parser.add_argument("--torso", default="impala_shallow")
    parser.add_argument("--updates", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--env-threads", type=int, default=-1)
    parser.add_argument(
        "--separate-torsos", action="store_true", help="two networks (default: one shared torso)"
    )
    args = parser.parse_args()
    print("command: python " + " ".join(sys.argv))
    print("machine:", machine_line())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    cfg = impala.ImpalaConfig(
        env_id=args.env,
        actors=args.actors,
        num_envs=args.num_envs,
        rollout_length=args.rollout_length,
        batch_size=args.batch_size,
        queue_size=args.queue_size,
        torso=args.torso,
        shared_torso=not args.separate_torsos,
        env_threads=args.env_threads,
        max_grad_norm=40.0,
        learning_rate=6e-4,
        optimizer_eps=0.01,
        total_steps=10**9,
    )
    trainer = impala.make_impala(cfg)
    state = trainer.init_state()
    t0 = time.perf_counter()
    _, state, _ = trainer.run_chunk(None, state, True, 2)  # compiles actors and learner
    jax.block_until_ready(state)
    print(f"compile + 2 updates: {time.perf_counter() - t0:.1f}s")

    rows = []
    for r in range(args.repeats):
        steps_before = int(state.env_steps)
        t0 = time.perf_counter()
        _, state, out = trainer.run_chunk(None, state, True, args.updates)
        jax.block_until_ready(state)
        wall = time.perf_counter() - t0
        frames = (int(state.env_steps) - steps_before) * FRAME_SKIP
        row = dict(
            fps=frames / wall,
            learner_update=out.learner_update_seconds / wall,
            learner_wait=out.learner_wait_seconds / wall,
            actor_busy=out.actor_seconds / wall,
            lag=float(np.mean(out.updates["policy_lag"])),
        )
        rows.append(row)
        print(
            f"repeat {r + 1}: {row['fps']:,.0f} frames/s ({row['fps'] / cores:,.0f} per core), "
            f"learner updating {row['learner_update']:.0%} / waiting {row['learner_wait']:.0%} "
            f"of wall time, actors busy {row['actor_busy']:.2f} thread-seconds per second, "
            f"lag {row['lag']:.2f}",
            flush=True,
        )
    total_envs = args.actors * args.num_envs
    raw = statistics.median(raw_env_fps(total_envs, 500, 3, args.env))
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    print()
    print(
        f"| {args.env}, {args.actors} actors x {args.num_envs} envs, T={args.rollout_length}, "
        f"batch {args.batch_size}, {args.torso} | value |"
    )
    print("|---|---:|")
    print(f"| frames/s (median of {args.repeats}) | {med['fps']:,.0f} |")
    print(f"| frames/s per CPU core ({cores} cores) | {med['fps'] / cores:,.0f} |")
    print(
        f"| learner: updating / waiting, share of wall time | "
        f"{med['learner_update']:.0%} / {med['learner_wait']:.0%} |"
    )
    print(f"| actors: busy thread-seconds per wall second | {med['actor_busy']:.2f} |")
    print(f"| policy lag (updates) | {med['lag']:.2f} |")
    print(f"| raw envpool, {total_envs} envs, random actions: frames/s | {raw:,.0f} |")


if __name__ == "__main__":
    main()
