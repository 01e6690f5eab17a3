"""Bar: updates per second of an asynchronous method with 2 threads against 1 thread on this
machine, measured in one process, interleaved, median of several repeats.

    python benchmarks/bench_async_threads.py [--methods a3c,q] [--env CartPole-v1]
        [--envs-per-thread 8] [--segments 1000] [--repeats 5] [--env-backend envpool,jax]

`--env-backend jax` (CartPole-v1 only) gives each thread `rlax_zoo.envs.jax_cartpole`, stepped
inside the thread's own jitted call instead of by envpool's worker thread, to tell envpool's
hand-off apart from JAX's own per-call cost.

Beside the method it times the two pieces a thread runs, each with 1 and 2 threads, so the
ceiling is visible: envpool's `env.xla()` stepping alone (5-step jitted calls, one env per
thread), pure-JAX compute alone (a jitted 64x64 matmul chain), the same compute in a call
that takes and returns 1 array against 30 arrays (the per-array cost of a jitted call), plus
the CPU time per wall second of one thread's env stepping (envpool's worker thread and its
spin-waiting caller).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import threading
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
from rlax_zoo.agents import async_methods as am  # noqa: E402
from rlax_zoo.config import validate  # noqa: E402
from rlax_zoo.envs.envpool_env import make_vec_env  # noqa: E402


def in_threads(fns, duration: float) -> list[float]:
    """Run each fn (a no-argument callable doing one unit of work) in its own thread for
    `duration` seconds; return each thread's units per second."""
    stop = threading.Event()
    rates = [0.0] * len(fns)

    def loop(i):
        n, t0 = 0, time.perf_counter()
        while not stop.is_set():
            fns[i]()
            n += 1
        rates[i] = n / (time.perf_counter() - t0)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    time.sleep(duration)
    stop.set()
    for t in threads:
        t.join()
    return rates


def env_worker(seed: int, env_id: str):
    env = make_vec_env(env_id, 1, seed)
    step = env.step

    @jax.jit
    def five(handle):
        def body(h, _):
            h, (obs, *_rest) = step(h, jnp.zeros((1,), jnp.int32))
            return h, obs

        return jax.lax.scan(body, handle, None, 5)

    box = [env.handle]

    def unit():
        box[0], obs = five(box[0])
        np.asarray(obs)

    unit()
    return unit


def compute_worker():
    @jax.jit
    def f(x):
        return jax.lax.scan(lambda c, _: (jnp.tanh(c @ c) * 0.5, None), x, None, 20)[0]

    box = [jnp.ones((64, 64)) * 0.01]

    def unit():
        box[0] = f(box[0]).block_until_ready()  # (an eager box[0][0, 0] would time dispatch)

    unit()
    return unit


def leaves_worker(num_arrays: int):
    """A jitted call of 20 64x64 matmuls that takes and returns `num_arrays` arrays (one 64x64
    matrix and num_arrays - 1 small vectors): the per-array cost of a call, which is why the
    asynchronous methods pack their state (`rlax_zoo.packing`)."""

    @jax.jit
    def f(xs):
        y = xs[0]
        for _ in range(20):
            y = jnp.tanh(y @ y) * 0.5
        return [y] + [x + 1 for x in xs[1:]]

    box = [[jnp.ones((64, 64)) * 0.01] + [jnp.ones((64,)) for _ in range(num_arrays - 1)]]

    def unit():
        box[0] = f(box[0])
        box[0][0].block_until_ready()

    unit()
    return unit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", default="a3c,q")
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--envs-per-thread", type=int, default=8)
    p.add_argument("--segments", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--env-backend",
        default="envpool",
        help="comma-separated: envpool and/or jax (the JAX CartPole; CartPole-v1 only)",
    )
    add_xla_cpu_threads_flag(p)
    args = p.parse_args()
    backends = args.env_backend.split(",")
    for backend in backends:  # the config's own checks, before anything is timed
        try:
            validate(am.AsyncConfig(env_id=args.env, env_backend=backend))
        except ValueError as exc:
            p.error(f"--env-backend {backend} --env {args.env}: {exc}")
    apply_xla_cpu_threads(args)
    print("command: python " + " ".join(sys.argv))
    print("machine: " + machine_line())

    print("\n| what | 1 thread | 2 threads (total) | 2 / 1 | median of paired 2 / 1 (sorted) |")
    print("|---|---:|---:|---:|---|")
    for method, backend in [(m, b) for m in args.methods.split(",") for b in backends]:
        trainers, states = {}, {}
        for k in (1, 2):
            cfg = dataclasses.replace(
                am.AsyncConfig(),
                method=method,
                env_id=args.env,
                env_backend=backend,
                threads=k,
                envs_per_thread=args.envs_per_thread,
                eval_envs=0,  # time the threads only
            )
            trainers[k] = am.make_async(cfg)
            states[k] = trainers[k].init_state()
            _, states[k], _ = trainers[k].run_chunk(None, states[k], True, 20)  # compile
        rates = {1: [], 2: []}
        for _ in range(args.repeats):
            for k in (1, 2):
                t0 = time.perf_counter()
                _, states[k], _ = trainers[k].run_chunk(None, states[k], True, args.segments)
                rates[k].append(args.segments / (time.perf_counter() - t0))
        one, two = statistics.median(rates[1]), statistics.median(rates[2])
        paired = sorted(b / a for a, b in zip(rates[1], rates[2], strict=True))
        print(
            f"| {method} updates/s ({args.env}, {backend}, {args.envs_per_thread} envs/thread) "
            f"| {one:,.0f} | {two:,.0f} | {two / one:.2f} | {statistics.median(paired):.2f} "
            f"({', '.join(f'{r:.2f}' for r in paired)}) |",
            flush=True,
        )

    for name, make in (
        (f"envpool {args.env} xla step alone, 5-step calls/s", lambda i: env_worker(i, args.env)),
        ("pure-JAX compute alone, calls/s", lambda i: compute_worker()),
        ("20 matmuls, 1 array in and out, calls/s", lambda i: leaves_worker(1)),
        ("20 matmuls, 30 arrays in and out, calls/s", lambda i: leaves_worker(30)),
    ):
        fns = [make(i) for i in range(2)]
        ones, twos = [], []
        for _ in range(args.repeats):
            ones.append(in_threads(fns[:1], 1.0)[0])
            twos.append(sum(in_threads(fns, 1.0)))
        one, two = statistics.median(ones), statistics.median(twos)
        print(f"| {name} | {one:,.0f} | {two:,.0f} | {two / one:.2f} | |", flush=True)

    unit = env_worker(7, args.env)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(2000):
        unit()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(
        f"\none thread stepping envpool: {cpu / wall:.2f} CPU seconds per wall second "
        "(the calling thread waits spinning while envpool's worker thread steps)"
    )


if __name__ == "__main__":
    main()
