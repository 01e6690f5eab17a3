"""Test-session setup: JAX's persistent compilation cache.

Many tests build the same jitted programs several times (a run, its resume, an uninterrupted
reference run), and on this 2-core machine XLA's compile time, not the arithmetic, dominates
them. The cache stores every compiled executable under `.jax_cache/` at the repository root
(ignored by git; a fresh clone starts empty), so a program compiled once is loaded the next
time, in this process, in the other pytest-xdist worker and in the subprocesses that tests
start. Set RLAX_ZOO_TEST_JAX_CACHE=0 to compile everything afresh.
"""

from __future__ import annotations

import os

_CACHE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".jax_cache")

if os.environ.get("RLAX_ZOO_TEST_JAX_CACHE", "1") != "0":
    # environment variables reach subprocesses; jax reads them when it is first imported
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

    import jax  # noqa: E402  (after the environment, in case a plugin imported it first)

    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
