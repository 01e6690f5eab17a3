"""V-trace speed: rlax_zoo.vtrace against rlax 0.1.9, same process, same inputs.

`vtrace_td_error_and_advantage` (errors, pg advantages, q estimates) under `jax.jit`, vmapped
over a batch of trajectories (time-major [T] each), for several T. Ours runs with both scan
implementations (sequential `lax.scan`, `lax.associative_scan`). The implementations are
interleaved (order alternating) for `--repeats` rounds; each timing is `--calls` jitted calls
from Python, blocked at the end; the table gives the median microseconds per call and rlax's
time divided by ours (> 1: ours faster). Outputs are checked equal (1e-6) before timing.

    python benchmarks/bench_vtrace.py [--lengths 20 80 1000 --batch 32 --repeats 9]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from rlax_zoo.vtrace import vtrace_td_error_and_advantage


def inputs(key, batch: int, length: int):
    k = jax.random.split(key, 5)
    v = jax.random.normal(k[0], (batch, length + 1))
    r_t = jax.random.normal(k[1], (batch, length))
    discount_t = 0.99 * (jax.random.uniform(k[2], (batch, length)) > 0.05)
    rho = jnp.exp(jax.random.normal(k[3], (batch, length)))
    return v[:, :-1], v[:, 1:], r_t, discount_t.astype(jnp.float32), rho


def main() -> None:
    import rlax

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[20, 80, 1000])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    from importlib.metadata import version

    print("command: python " + " ".join(sys.argv))
    print(f"jax {jax.__version__}, rlax {version('rlax')}, backend {jax.default_backend()}")

    impls = {
        "rlax": jax.jit(jax.vmap(rlax.vtrace_td_error_and_advantage)),
        "ours sequential": jax.jit(jax.vmap(vtrace_td_error_and_advantage)),
        "ours associative": jax.jit(
            jax.vmap(lambda *a: vtrace_td_error_and_advantage(*a, scan_impl="associative"))
        ),
    }
    rows = []
    for length in args.lengths:
        x = inputs(jax.random.key(length), args.batch, length)
        reference = impls["rlax"](*x)
        for name, fn in impls.items():
            out = fn(*x)
            for a, b in zip(out, reference, strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6, err_msg=name)
        times = {name: [] for name in impls}
        for r in range(args.repeats):
            order = list(impls) if r % 2 == 0 else list(reversed(impls))
            for name in order:
                fn = impls[name]
                jax.block_until_ready(fn(*x))
                t0 = time.perf_counter()
                for _ in range(args.calls):
                    out = fn(*x)
                jax.block_until_ready(out)
                times[name].append((time.perf_counter() - t0) / args.calls * 1e6)
        med = {name: statistics.median(ts) for name, ts in times.items()}
        for name in impls:
            ratio = [a / b for a, b in zip(times["rlax"], times[name], strict=True)]
            rows.append((length, name, med[name], statistics.median(ratio)))
        print(f"T={length}: " + ", ".join(f"{n} {m:.1f} us" for n, m in med.items()))

    print()
    print(f"| T (batch {args.batch}) | implementation | us per call (median) | rlax / ours |")
    print("|---:|---|---:|---:|")
    for length, name, us, ratio in rows:
        print(f"| {length} | {name} | {us:.1f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
