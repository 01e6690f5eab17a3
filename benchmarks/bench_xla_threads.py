"""XLA:CPU with one intra-op thread against XLA's default pool (every CPU), same workloads.

The pool's size is fixed when a process starts JAX (`rlax_zoo/xla_cpu.py`), so each setting
runs in its own subprocess; the two settings alternate for `--repeats` rounds and the table
reports the median per setting and the median of the per-round ratios. Workloads:

* dqn-matched, dqn-default: our DQN training loop on CartPole-v1 (10 envs, learning phase,
  `Trainer.run_chunk`), with purejaxrl's hyperparameters and with our default algorithm
  (the configs of `bench_dqn_speed.py`); env steps per second.
* replay: prioritized replay add 8 + sample 256 + set_priorities 256, capacity 100k, 1000 ops
  in one `lax.scan` (the op of `bench_replay.py`, batch-normalised weights, the tree strategy
  the DQN agent picks for the setting); ops per second.
* gather-loop: a jitted loop of 17 batched gathers of 256 elements (a sum-tree descent's
  shape) repeated 1000 times; loops per second.
* nature-cnn-grad: the gradient of the Nature CNN on 32 Atari frames (convolutions); calls
  per second.
* transformer-step: 10 Adam steps of `rlax-zoo train transformer`'s default model on its
  first 10 Multi30k batches (attention and matrix products); steps per second.
* alphazero-iteration: 2 iterations of `rlax-zoo train alphazero`'s defaults on tic-tac-toe
  (64 games of MCTS self-play with 32 simulations a move, then 8 Adam steps); iterations per
  second.
* dreamer-iteration: 10 iterations of `rlax-zoo train dreamer`'s defaults on CartPole-v1
  (the env steps, then one world-model, critic and actor update each); iterations per second.

    python benchmarks/bench_xla_threads.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKLOADS = (
    "dqn-matched",
    "dqn-default",
    "replay",
    "gather-loop",
    "nature-cnn-grad",
    "transformer-step",
    "alphazero-iteration",
    "dreamer-iteration",
)


def _best_rate(fn, units: float, calls: int = 3) -> float:
    """Median rate over `calls` timed calls of `fn` (compiled before)."""
    import jax

    jax.block_until_ready(fn())
    rates = []
    for _ in range(calls):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        rates.append(units / (time.perf_counter() - t0))
    return statistics.median(rates)


def measure(workload: str) -> float:
    """One workload's rate in this process (the pool is already sized)."""
    import jax
    import jax.numpy as jnp

    if workload.startswith("dqn"):
        from benchmarks import bench_dqn_speed as bd

        cfg = (bd.matched_config if workload == "dqn-matched" else bd.default_config)(10)
        call, steps = bd.ours_full_loop(cfg, 20_000)
        call()  # compile
        return statistics.median(steps / call() for _ in range(3))
    if workload == "replay":
        from benchmarks import bench_replay as br
        from rlax_zoo import xla_cpu

        br.TREE_IMPL = xla_cpu.replay_tree_impl()
        init, op = br.make_ours(100_000, 256, 8, normalise="batch")
        run = jax.jit(
            lambda s, k: jax.lax.scan(lambda s, k: (op(s, k), None), s, jax.random.split(k, 1000))[
                0
            ],
            donate_argnums=0,
        )
        state = [init()]

        def fn():
            state[0] = run(state[0], jax.random.key(len(state)))
            return state[0]

        return _best_rate(fn, 1000)
    if workload == "gather-loop":
        table = jax.random.uniform(jax.random.key(0), (262_144,))

        @jax.jit
        def loop(table):
            def body(carry, _):
                node, acc = carry
                for _ in range(17):
                    v = table[node]
                    node = (2 * node + (v > 0.5).astype(jnp.int32)) % 131_072
                return (node, acc + v.sum()), None

            start = (jnp.arange(256, dtype=jnp.int32), 0.0)
            return jax.lax.scan(body, start, None, length=1000)[0][1]

        return _best_rate(lambda: loop(table), 1)
    if workload == "nature-cnn-grad":
        from rlax_zoo.networks import NatureCNN

        net = NatureCNN()
        frames = jnp.ones((32, 4, 84, 84), jnp.uint8)
        params = net.init(jax.random.key(0), frames)
        grad = jax.jit(jax.grad(lambda p: jnp.mean(net.apply(p, frames) ** 2)))
        return _best_rate(lambda: grad(params), 1, calls=5)
    if workload == "transformer-step":
        from sequence.data import load_translation
        from sequence.translate import TransformerConfig, make_translation_trainer

        trainer = make_translation_trainer(TransformerConfig(), load_translation())
        start = trainer.init(jax.random.PRNGKey(0))
        # the same 10 batches each call, from a copy of the start (train_chunk donates it)
        return _best_rate(
            lambda: trainer.train_chunk(jax.tree.map(jnp.copy, start), 10)[1]["loss"], 10
        )
    if workload == "alphazero-iteration":
        from rlax_zoo.agents.alphazero import AlphaZeroConfig, make_alphazero

        trainer = make_alphazero(AlphaZeroConfig())
        start = trainer.init(jax.random.PRNGKey(0))
        return _best_rate(
            lambda: trainer.train_chunk(jax.tree.map(jnp.copy, start), 2)[1]["loss"], 2
        )
    if workload == "dreamer-iteration":
        from rlax_zoo.agents.dreamer import DreamerConfig, make_dreamer

        trainer = make_dreamer(DreamerConfig())
        start = trainer.init(jax.random.PRNGKey(0))
        return _best_rate(
            lambda: trainer.train_chunk(jax.tree.map(jnp.copy, start), 10)[1]["model_loss"], 10
        )
    raise ValueError(f"workload must be one of {WORKLOADS}, got {workload!r}")


def child(threads: str, workloads: list[str]) -> None:
    sys.path.insert(0, ROOT)
    from rlax_zoo import xla_cpu

    if threads != "all":
        xla_cpu.configure_cpu_threads(int(threads))
    print(json.dumps({w: measure(w) for w in workloads}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    workloads = args.workloads.split(",")
    if args.child is not None:
        child(args.child, workloads)
        return
    sys.path.insert(0, ROOT)
    from benchmarks.dqn_cartpole import machine_line

    print("command: python " + " ".join(sys.argv))
    print("machine: " + machine_line())
    results = {s: {w: [] for w in workloads} for s in ("1", "all")}
    for r in range(args.repeats):
        for setting in ("1", "all") if r % 2 == 0 else ("all", "1"):
            out = subprocess.run(
                [sys.executable, __file__, "--child", setting, "--workloads", args.workloads],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            )
            rates = json.loads(out.stdout.strip().splitlines()[-1])
            for w in workloads:
                results[setting][w].append(rates[w])
        print(
            f"repeat {r + 1}/{args.repeats}: "
            + ", ".join(
                f"{w} {results['1'][w][-1]:,.1f} / {results['all'][w][-1]:,.1f}" for w in workloads
            ),
            flush=True,
        )
    print("\n| workload | one thread (per s) | XLA default pool (per s) | one / default |")
    print("|---|---:|---:|---:|")
    for w in workloads:
        one, default = results["1"][w], results["all"][w]
        ratio = statistics.median(a / b for a, b in zip(one, default, strict=True))
        print(
            f"| {w} | {statistics.median(one):,.1f} | {statistics.median(default):,.1f} "
            f"| {ratio:.2f}x |"
        )
    print(f"\nmedians over {args.repeats} rounds; each round runs both settings in fresh processes")


if __name__ == "__main__":
    main()
