"""The size of XLA:CPU's intra-op thread pool: one thread is often faster for small-op RL loops.

XLA's CPU client runs the kernels of an executable on an intra-op thread pool whose size is the
number of CPUs the process may use when the backend starts (its scheduler affinity). A loop of
many tiny kernels, such as a DQN update of an MLP on a batch of 128 or the level-by-level walk of
a sum tree, pays a hand-over between threads for each kernel, which the work does not repay. On
the 2-core machine of `benchmarks/RESULTS.md` ("XLA:CPU with one intra-op thread", medians of
5 rounds), one thread ran a jitted loop of 17 batched gathers of 256 elements 11.4x faster,
prioritized replay (add, sample, set priorities) 3.0x faster and our default DQN training
loop on CartPole 1.4x faster; the DQN loop with a plain uniform buffer and a Nature-CNN
gradient on 32 Atari frames ran at the same speed (1.02x each; in an earlier probe the CNN
gradient was 1.45x slower with one thread), so the choice depends on the workload.

XLA has no flag for this pool's size. `configure_cpu_threads(n)` starts the CPU backend while
the calling thread's affinity is restricted to `n` CPUs, so the pool is created with `n`
threads, and then gives every thread of the process back the CPUs it had (the pool's threads
included: they may run on any of them). It must run before the first JAX computation of the
process (creating an array counts). Linux only (it needs `os.sched_setaffinity`).

    from rlax_zoo import xla_cpu
    xla_cpu.configure_cpu_threads(1)   # first thing, before any jnp call
    ...

With one intra-op thread, the jitted calls of several Python threads run one after another
(A3C on Pong-v5 with 2 actor-learner threads: 1.04x the updates of 1 thread, against 1.33x
with XLA's default pool in the same session), so methods built on Python threads want the
default pool.

The `rlax-zoo train` command does this itself (`--xla-cpu-threads`, default `auto`: one thread
for vector-observation environments and PR-SSM, every CPU for Atari frames, images and the
threaded methods).

This file is vendorable: it imports only jax and the standard library.
"""

from __future__ import annotations

import os
from typing import Any

import jax

_configured: int | None = None


def _backends_initialized() -> bool:
    try:
        from jax._src import xla_bridge
    except ImportError:  # pragma: no cover - private module moved; assume not started
        return False
    return bool(getattr(xla_bridge, "_backends", {}))


def _thread_ids() -> list[int]:
    return [int(t) for t in os.listdir("/proc/self/task")]


def available_cpus() -> int:
    """Number of CPUs this process may run on (its scheduler affinity)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def configured_threads() -> int | None:
    """The pool size set by `configure_cpu_threads` in this process, or None (XLA's default)."""
    return _configured


def configure_cpu_threads(threads: Any) -> int:
    """Starts JAX's CPU backend with an intra-op pool of `threads` threads; returns `threads`.

    Not a paper equation: a runtime setting (see the module docstring for the measurements).

    Args:
      threads: int in [1, available_cpus()]. Calling again with the same value is a no-op.

    Raises:
      ValueError: `threads` is not an integer in that range.
      RuntimeError: the backend is already running (JAX computed something before this call),
        or the platform cannot restrict thread affinity (not Linux).
    """
    global _configured
    limit = available_cpus()
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= limit:
        raise ValueError(
            f"threads must be an integer from 1 to {limit} (the CPUs this process may use), "
            f"got {threads!r}"
        )
    if _configured == threads:
        return threads
    if _backends_initialized():
        raise RuntimeError(
            "threads: JAX's backend is already running, so its CPU thread pool has its size; "
            "call configure_cpu_threads before the first JAX computation of the process"
        )
    if not (hasattr(os, "sched_setaffinity") and os.path.isdir("/proc/self/task")):
        raise RuntimeError("threads: restricting the CPU affinity needs Linux")
    before = {tid: os.sched_getaffinity(tid) for tid in _thread_ids()}
    mask = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, set(sorted(mask)[:threads]))
        jax.devices("cpu")  # starts the CPU client: its pools are sized by the affinity
    finally:
        for tid in _thread_ids():
            try:
                os.sched_setaffinity(tid, before.get(tid, mask))
            except OSError:  # a thread that ended meanwhile
                pass
    _configured = threads
    return threads


def replay_tree_impl() -> str:
    """The `tree_impl` of `rlax_zoo.replay.prioritized_replay` that suits this process.

    "walk" (scalar kernels only) when JAX's default backend is the CPU with XLA's default
    multi-threaded pool, else "auto" (batched levels: the faster choice with one intra-op thread
    and on accelerators; see `benchmarks/RESULTS.md`, "Prioritized replay against flashbax").
    """
    if jax.default_backend() == "cpu" and _configured != 1 and available_cpus() > 1:
        return "walk"
    return "auto"
