"""Prioritized replay speed: rlax_zoo.replay (proportional) vs flashbax 0.1.3, same process.

One "op" = add `--add-batch` CartPole-sized transitions + sample `--batch` + set `--batch`
priorities (Schaul et al. 2016, Algorithm 1 lines 6, 9-10, 12). Both buffers are pre-filled to
`--capacity` so every add overwrites (steady state). Two modes:

* per-step: one jitted op (buffer donated) called from Python `--steps` times;
* scan: `--scan-length` ops inside one `lax.scan` in one jitted call (buffer donated).

Ours and flashbax are interleaved (alternating order) for `--repeats` rounds; the table reports
median ops/s and ours/flashbax. flashbax is only a speed baseline: in 0.1.3 new items get the
max priority cast to an integer dtype (2.7 -> 2), and it returns no importance weights (here it
gets the usual batch-max-normalised weights computed from its probabilities, so both ops do
comparable work). Ours runs twice: with the default importance weights normalised over the
whole buffer (exact, through a min tree), and with `normalise_weights="batch"`, the same
semantics as the flashbax side (and the DQN agent's default), which needs no min tree.
Everything runs with one XLA CPU intra-op thread unless `--xla-cpu-threads` says otherwise;
ours uses the tree strategy the DQN agent picks for that setting.

    python benchmarks/bench_replay.py [--capacity 100000 --batch 256 --repeats 5]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.dqn_cartpole import (  # noqa: E402
    add_xla_cpu_threads_flag,
    apply_xla_cpu_threads,
    machine_line,
)
from rlax_zoo import replay, xla_cpu  # noqa: E402

ALPHA, BETA, EPS = 0.6, 0.4, 1e-6
TREE_IMPL = "auto"  # main() sets what the DQN agent would use (rlax_zoo.xla_cpu.replay_tree_impl)


def transitions(key: jax.Array, n: int) -> dict:
    """`n` CartPole-sized transitions with a leading [n] axis."""
    k_obs, k_next, k_act, k_rew = jax.random.split(key, 4)
    return {
        "obs": jax.random.normal(k_obs, (n, 4), jnp.float32),
        "action": jax.random.randint(k_act, (n,), 0, 2, jnp.int32),
        "reward": jax.random.uniform(k_rew, (n,), jnp.float32),
        "discount": jnp.full((n,), 0.99, jnp.float32),
        "next_obs": jax.random.normal(k_next, (n, 4), jnp.float32),
    }


def fake_td_errors(key: jax.Array, reward: jax.Array, weights: jax.Array) -> jax.Array:
    """Stand-in for |delta| that depends on the sampled items (nothing is dead code)."""
    return jnp.abs(reward + jax.random.normal(key, reward.shape)) * weights


def prefilled(buffer, capacity: int):
    """A buffer (ours or flashbax's: same init/add API) filled with `capacity` transitions."""
    state = buffer.init(jax.tree.map(lambda x: x[0], transitions(jax.random.key(0), 1)))
    return jax.jit(buffer.add, donate_argnums=0)(state, transitions(jax.random.key(1), capacity))


def make_ours(capacity: int, batch: int, add_batch: int, normalise: str = "buffer"):
    buffer = replay.prioritized_replay(
        capacity,
        batch,
        alpha=ALPHA,
        kind="proportional",
        eps=EPS,
        tree_impl=TREE_IMPL,
        normalise_weights=normalise,
    )

    def init() -> replay.ReplayState:
        return prefilled(buffer, capacity)

    def op(state, key):
        k_add, k_sample, k_td = jax.random.split(key, 3)
        state = buffer.add(state, transitions(k_add, add_batch))
        sample = buffer.sample(state, k_sample, BETA)
        td = fake_td_errors(k_td, sample.items["reward"], sample.weights)
        return buffer.set_priorities(state, sample.indices, td)

    return init, op


def make_flashbax(capacity: int, batch: int, add_batch: int):
    import flashbax

    buffer = flashbax.make_prioritised_item_buffer(
        max_length=capacity,
        min_length=batch,
        sample_batch_size=batch,
        add_batches=True,
        priority_exponent=ALPHA,
        device="cpu",
    )

    def init():
        return prefilled(buffer, capacity)

    def op(state, key):
        k_add, k_sample, k_td = jax.random.split(key, 3)
        state = buffer.add(state, transitions(k_add, add_batch))
        sample = buffer.sample(state, k_sample)
        # Importance weights as flashbax users compute them (normalised by the batch max).
        weights = (capacity * sample.probabilities) ** -BETA
        weights = weights / weights.max()
        td = fake_td_errors(k_td, sample.experience["reward"], weights)
        return buffer.set_priorities(state, sample.indices, td + EPS)

    return init, op


def time_per_step(step, state, steps: int):
    """(wall ops/s, CPU-time ops/s, state) for `steps` jitted calls from Python."""
    state = step(state, 0)  # warm-up (compiled already)
    jax.block_until_ready(state)
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(1, steps + 1):
        state = step(state, i)
    jax.block_until_ready(state)
    return steps / (time.perf_counter() - wall), steps / (time.process_time() - cpu), state


def time_scan(run, state, seed: int, scan_length: int):
    """(wall ops/s, CPU-time ops/s, state) for one jitted call scanning `scan_length` ops."""
    wall, cpu = time.perf_counter(), time.process_time()
    state = run(state, jax.random.key(seed))
    jax.block_until_ready(state)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return scan_length / wall, scan_length / cpu, state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--capacity", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--add-batch", type=int, default=8, help="items added per op")
    parser.add_argument("--steps", type=int, default=300, help="ops per per-step timing")
    parser.add_argument("--scan-length", type=int, default=1000, help="ops per scan call")
    add_xla_cpu_threads_flag(parser)
    args = parser.parse_args()
    apply_xla_cpu_threads(args)
    global TREE_IMPL
    TREE_IMPL = xla_cpu.replay_tree_impl()

    from importlib.metadata import version

    import flashbax  # noqa: F401  (fail early if missing)

    print("command:", "python " + " ".join(sys.argv))
    print(f"jax {jax.__version__}, flashbax {version('flashbax')}, numpy {np.__version__}")
    print(f"backend: {jax.default_backend()}, devices: {jax.devices()}")
    print("machine: " + machine_line())
    print(f"our tree_impl: {TREE_IMPL!r} (rlax_zoo.xla_cpu.replay_tree_impl(), as the DQN agent)")
    print(
        f"capacity={args.capacity} batch={args.batch} add_batch={args.add_batch} "
        f"steps={args.steps} scan_length={args.scan_length} repeats={args.repeats}"
    )

    impls = {}
    makers = {
        "ours": make_ours,  # importance weights normalised over the whole buffer (min tree)
        "ours-batch": functools.partial(make_ours, normalise="batch"),  # as flashbax's side
        "flashbax": make_flashbax,
    }
    for name, make in makers.items():
        init, op = make(args.capacity, args.batch, args.add_batch)
        base_key = jax.random.key(123)

        def step(state, i, op=op, base_key=base_key):
            return op(state, jax.random.fold_in(base_key, i))

        def run(state, key, op=op):
            keys = jax.random.split(key, args.scan_length)
            return jax.lax.scan(lambda s, k: (op(s, k), None), state, keys)[0]

        step = jax.jit(step, donate_argnums=0)
        run = jax.jit(run, donate_argnums=0)
        t0 = time.perf_counter()
        state = init()
        state = step(state, 0)
        state = run(state, jax.random.key(0))
        jax.block_until_ready(state)
        print(f"{name}: fill + compile {time.perf_counter() - t0:.1f}s")
        impls[name] = {"step": step, "run": run, "state": state}

    # results[name, mode] = list of (wall ops/s, CPU-time ops/s), one per repeat.
    results = {(name, mode): [] for name in impls for mode in ("per-step", "scan")}
    for r in range(args.repeats):
        order = list(impls) if r % 2 == 0 else list(reversed(impls))
        for name in order:
            impl = impls[name]
            *ops, impl["state"] = time_per_step(impl["step"], impl["state"], args.steps)
            results[name, "per-step"].append(ops)
            *ops, impl["state"] = time_scan(impl["run"], impl["state"], r + 1, args.scan_length)
            results[name, "scan"].append(ops)
        print(
            f"repeat {r + 1}/{args.repeats} (wall ops/s): "
            + ", ".join(f"{n}/{m} {v[-1][0]:,.0f}" for (n, m), v in results.items())
        )

    print()
    print(
        f"| mode (capacity {args.capacity:,}, batch {args.batch}, add {args.add_batch}) "
        "| weights normalised over | ours ops/s | flashbax 0.1.3 ops/s | ours / flashbax "
        "| ours / flashbax (CPU time) |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for mode in ("per-step", "scan"):
        for name, over in (("ours", "the buffer (min tree)"), ("ours-batch", "the batch")):
            ours, theirs = results[name, mode], results["flashbax", mode]
            # Ratios are paired per repeat (measured back to back), then the median is taken.
            wall = statistics.median(o[0] / t[0] for o, t in zip(ours, theirs, strict=True))
            cpu = statistics.median(o[1] / t[1] for o, t in zip(ours, theirs, strict=True))
            label = (
                "per-step (one jitted call per op, donated)"
                if mode == "per-step"
                else f"lax.scan of {args.scan_length} ops in one jitted call (donated)"
            )
            print(
                f"| {label} | {over} | {statistics.median(o[0] for o in ours):,.0f} "
                f"| {statistics.median(t[0] for t in theirs):,.0f} | {wall:.2f}x | {cpu:.2f}x |"
            )
    print(
        f"\nops/s: median over {args.repeats} interleaved repeats (wall clock). Ratios: median of "
        f"per-repeat ratios (wall clock; and process CPU time, steadier on a shared machine). "
        f"One op = add {args.add_batch} + sample {args.batch} + set_priorities {args.batch}."
    )


if __name__ == "__main__":
    main()
