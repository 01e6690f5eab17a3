"""The Atari path: DQN (double + dueling + prioritized, n-step 3, Nature CNN) on Pong-v5
through envpool, reporting frames per second (env steps x frame_skip 4) of the whole training
loop and of envpool's raw `env.xla()` stepping with the same number of environments.

    python benchmarks/dqn_pong.py [--total-steps 20000] [--num-envs 8] [--buffer-size 20000]

On a 2-core CPU this measures throughput, not a finished Pong agent (that needs millions of
frames); the learning curve of whatever it ran goes to its run folder.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.dqn_cartpole import machine_line  # noqa: E402
from rlax_zoo import runner
from rlax_zoo.agents import dqn
from rlax_zoo.envs.envpool_env import make_vec_env

FRAME_SKIP = 4


def raw_env_fps(num_envs: int, steps: int, repeats: int, env_id: str = "Pong-v5") -> list[float]:
    """envpool's raw env.xla() stepping with random actions in a jitted scan: frames/s."""
    vec = make_vec_env(env_id, num_envs, seed=0)
    step = vec.step

    @jax.jit
    def run(handle, key):
        def body(carry, _):
            h, k = carry
            k, sub = jax.random.split(k)
            a = jax.random.randint(sub, (num_envs,), 0, vec.num_actions, jnp.int32)
            h, _out = step(h, a)
            return (h, k), None

        (handle, key), _ = jax.lax.scan(body, (handle, key), None, steps)
        return handle, key

    handle, key = run(vec.handle, jax.random.PRNGKey(0))  # compile
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        handle, key = jax.block_until_ready(run(handle, key))
        out.append(steps * num_envs * FRAME_SKIP / (time.perf_counter() - t0))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--total-steps", type=int, default=20_000)
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--buffer-size", type=int, default=20_000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--run-dir", default=None)
    args = p.parse_args()
    print("command: python " + " ".join(sys.argv))
    print("machine: " + machine_line())
    cfg = dqn.DQNConfig(
        env_id="Pong-v5",
        total_steps=args.total_steps,
        num_envs=args.num_envs,
        buffer_size=args.buffer_size,
        batch_size=32,
        learning_rate=1e-4,
        adam_eps=1.5e-4,
        learning_starts=2_000,
        target_period=1_000,
        epsilon_end=0.01,
        exploration_fraction=0.1,
        rollout_length=1,
        updates_per_rollout=max(1, args.num_envs // 4),  # one update per 4 env steps
        iterations_per_chunk=100,
        checkpoint_every=1_000_000,  # only the final checkpoint
        reward_clip=True,
    )
    result = runner.run("dqn", dqn.make_dqn, cfg, run_dir=args.run_dir, progress=False)
    learn_rows = [r for r in result.metrics if float(r["loss"]) != 0.0]
    sps = np.array([float(r["steps_per_sec"]) for r in learn_rows[1:]])  # skip the compile
    raw = raw_env_fps(args.num_envs, 500, args.repeats)
    loop_fps = np.median(sps) * FRAME_SKIP
    print(
        f"\nPong-v5, {args.num_envs} envs, batch 32, {cfg.updates_per_rollout} update(s) per "
        f"{args.num_envs} env steps, {args.total_steps} env steps "
        f"({args.total_steps * FRAME_SKIP} frames)\n"
    )
    print("| measurement | frames/s (median) | min-max |")
    print("|---|---|---|")
    print(
        f"| DQN training loop (learning chunks) | {loop_fps:,.0f} | "
        f"{sps.min() * FRAME_SKIP:,.0f}-{sps.max() * FRAME_SKIP:,.0f} |"
    )
    print(
        f"| envpool raw xla step, random actions | {np.median(raw):,.0f} | "
        f"{min(raw):,.0f}-{max(raw):,.0f} |"
    )
    print(f"\nloop / raw env: {loop_fps / np.median(raw):.3f}")
    eps = result.episode_returns[0]
    print(f"episodes finished: {len(eps)}; returns: {[round(x) for x in eps]}")
    print(f"run folder: {result.run_dir}")


if __name__ == "__main__":
    main()
