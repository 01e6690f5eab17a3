"""V-trace (Espeholt et al. 2018, eq. 1) against a brute-force NumPy sum, by hand, and rlax."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlax_zoo.vtrace import SCAN_IMPLS, vtrace, vtrace_td_error_and_advantage


def brute_force(v_tm1, v_t, r_t, discount_t, rho, lam, rho_bar, c_bar, pg_rho_bar=1.0):
    """Eq. (1) as the double sum it is written as, in float64, plus the q / pg advantage."""
    v_tm1, v_t, r_t, discount_t, rho = (
        np.asarray(x, np.float64) for x in (v_tm1, v_t, r_t, discount_t, rho)
    )
    n = len(v_tm1)
    lam = np.broadcast_to(np.asarray(lam, np.float64), (n,))
    clipped_rho = np.minimum(rho_bar, rho)
    c = lam * np.minimum(c_bar, rho)
    delta = clipped_rho * (r_t + discount_t * v_t - v_tm1)
    v = np.zeros(n)
    for s in range(n):
        total = 0.0
        for t in range(s, n):
            prod = 1.0
            for i in range(s, t):
                prod *= discount_t[i] * c[i]
            total += prod * delta[t]
        v[s] = v_tm1[s] + total
    next_target = np.append(lam[:-1] * v[1:] + (1 - lam[:-1]) * v_t[:-1], v_t[-1])
    q = r_t + discount_t * next_target
    pg = np.minimum(pg_rho_bar, rho) * (q - v_tm1)
    return v - v_tm1, pg, q


def random_trajectory(rng, n, *, episode_ends=True, big_rho=False):
    v_tm1 = rng.normal(size=n)
    v_t = np.append(v_tm1[1:], rng.normal())  # a contiguous trajectory: V(x_{t+1})
    r_t = rng.normal(size=n)
    discount_t = np.full(n, 0.97)
    if episode_ends:
        discount_t[rng.random(n) < 0.15] = 0.0
    rho = np.exp(rng.normal(scale=1.0, size=n))
    rho[rng.random(n) < 0.1] = 0.0
    if big_rho:
        rho[rng.random(n) < 0.2] = 1e6
    return [x.astype(np.float32) for x in (v_tm1, v_t, r_t, discount_t, rho)]


def run(args, scan_impl="sequential", **kw):
    out = vtrace_td_error_and_advantage(*map(jnp.asarray, args), scan_impl=scan_impl, **kw)
    return [np.asarray(x) for x in out]


@pytest.mark.parametrize("scan_impl", SCAN_IMPLS)
@pytest.mark.parametrize("n", [1, 2, 7, 60])
@pytest.mark.parametrize(
    "lam, rho_bar, c_bar, pg_bar",
    [
        (1.0, 1.0, 1.0, 1.0),
        (0.9, 2.0, 0.5, 1.5),
        (1.0, np.inf, np.inf, np.inf),
        ("vector", 1.0, 1.0, 1.0),
    ],
)
def test_vtrace_matches_brute_force_sum(scan_impl, n, lam, rho_bar, c_bar, pg_bar):
    rng = np.random.default_rng(n)
    for big_rho in (False, True):
        if big_rho and np.isinf(rho_bar):
            continue  # unclipped ratios of 1e6 overflow any float32 comparison
        args = random_trajectory(rng, n, big_rho=big_rho)
        lam_arg = rng.uniform(0, 1, n).astype(np.float32) if lam == "vector" else lam
        want = brute_force(*args, lam_arg, rho_bar, c_bar, pg_bar)
        got = run(
            args + [lam_arg],
            scan_impl,
            clip_rho_threshold=rho_bar,
            clip_c_threshold=c_bar,
            clip_pg_rho_threshold=pg_bar,
        )
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("scan_impl", SCAN_IMPLS)
def test_vtrace_long_trajectory(scan_impl):
    """T = 1000, episode ends inside: eq. (1) summed in float64 with a running product."""
    rng = np.random.default_rng(0)
    n = 1000
    v_tm1, v_t, r_t, discount_t, rho = random_trajectory(rng, n)
    c = np.minimum(1.0, rho.astype(np.float64))
    delta = np.minimum(1.0, rho.astype(np.float64)) * (r_t + discount_t * v_t - v_tm1)
    want = np.zeros(n)
    for s in range(n):  # the sum of eq. (1), the running product kept instead of recomputed
        prod, total = 1.0, 0.0
        for t in range(s, n):
            total += prod * delta[t]
            prod *= discount_t[t] * c[t]
            if prod == 0.0:
                break
        want[s] = total
    got = np.asarray(
        vtrace(*map(jnp.asarray, (v_tm1, v_t, r_t, discount_t, rho)), scan_impl=scan_impl)
    )
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_vtrace_by_hand():
    """T = 2, gamma = 0.5, rho = (2, 0.5), rho_bar = c_bar = 1:
    delta_1 = 0.5 (r_1 + 0.5 V_2 - V_1) = 0.5 (1 + 0.5 * 4 - 3) = 0,
    delta_0 = min(1, 2) (r_0 + 0.5 V_1 - V_0) = 1 (1 + 1.5 - 1) = 1.5,
    v_0 - V_0 = delta_0 + gamma c_0 delta_1 = 1.5 + 0.5 * 1 * 0 = 1.5, v_1 - V_1 = 0;
    q_0 = r_0 + gamma v_1 = 1 + 0.5 * 3 = 2.5, pg_0 = 1 * (2.5 - 1) = 1.5;
    q_1 = r_1 + gamma V_2 = 3, pg_1 = 0.5 * (3 - 3) = 0."""
    out = vtrace_td_error_and_advantage(
        jnp.array([1.0, 3.0]),
        jnp.array([3.0, 4.0]),
        jnp.array([1.0, 1.0]),
        jnp.array([0.5, 0.5]),
        jnp.array([2.0, 0.5]),
    )
    np.testing.assert_allclose(out.errors, [1.5, 0.0])
    np.testing.assert_allclose(out.q_estimate, [2.5, 3.0])
    np.testing.assert_allclose(out.pg_advantage, [1.5, 0.0])


def test_on_policy_vtrace_is_the_n_step_return():
    """rho = 1, lambda = 1: v_s is the discounted return to the end, bootstrapped from V(x_T)."""
    rng = np.random.default_rng(1)
    v_tm1, v_t, r_t, _, _ = random_trajectory(rng, 9)
    gamma = 0.9
    errors = vtrace(
        jnp.asarray(v_tm1), jnp.asarray(v_t), jnp.asarray(r_t), jnp.full(9, gamma), jnp.ones(9)
    )
    for s in range(9):
        g = sum(gamma ** (t - s) * r_t[t] for t in range(s, 9)) + gamma ** (9 - s) * v_t[-1]
        np.testing.assert_allclose(errors[s] + v_tm1[s], g, rtol=1e-5)


def test_zero_rho_and_infinite_rho():
    """rho = 0: that step adds nothing and cuts the trace; rho = inf is clipped, never nan."""
    args = [
        jnp.array([0.0, 0.0]),
        jnp.array([0.0, 10.0]),
        jnp.array([1.0, 1.0]),
        jnp.ones(2),
        jnp.array([0.0, 1.0]),
    ]
    np.testing.assert_allclose(vtrace(*args), [0.0, 11.0])
    args[-1] = jnp.array([jnp.inf, jnp.inf])
    out = vtrace_td_error_and_advantage(*args)
    np.testing.assert_allclose(out.errors, [12.0, 11.0])  # 1 + 1 * (1 + 10)
    assert np.all(np.isfinite(np.asarray(out.pg_advantage)))


def test_lambda_zero_cuts_the_trace_but_bootstraps():
    """lambda_t = 0 (a truncation at x_{t+1}): v_t = r_t + gamma V(x_{t+1}), not the next row."""
    v_tm1 = jnp.array([0.0, 100.0])  # row 1 starts a new episode from the truncated obs
    v_t = jnp.array([5.0, 0.0])
    out = vtrace_td_error_and_advantage(
        v_tm1,
        v_t,
        jnp.array([1.0, 50.0]),
        jnp.array([0.5, 0.5]),
        jnp.ones(2),
        jnp.array([0.0, 1.0]),
    )
    np.testing.assert_allclose(out.errors[0], 1.0 + 0.5 * 5.0)
    np.testing.assert_allclose(out.q_estimate[0], 1.0 + 0.5 * 5.0)


def test_gradients_flow_only_through_the_baseline():
    rng = np.random.default_rng(2)
    v_tm1, v_t, r_t, discount_t, rho = map(jnp.asarray, random_trajectory(rng, 6))

    def loss(v_tm1, v_t):
        return 0.5 * jnp.sum(vtrace(v_tm1, v_t, r_t, discount_t, rho) ** 2)

    g_tm1, g_t = jax.grad(loss, argnums=(0, 1))(v_tm1, v_t)
    np.testing.assert_allclose(g_tm1, -vtrace(v_tm1, v_t, r_t, discount_t, rho), rtol=1e-6)
    np.testing.assert_array_equal(g_t, 0.0)


def test_bad_inputs_are_refused():
    x = jnp.ones(3)
    with pytest.raises(AssertionError):
        vtrace(x, x, x, x, jnp.ones(4))
    with pytest.raises(ValueError, match="scan_impl"):
        vtrace(x, x, x, x, x, scan_impl="parallel")


@pytest.mark.parametrize("n", [1, 20, 80])
def test_equal_to_rlax(n):
    """Same definitions (c_bar = 1, lambda scalar or vector): equal to 1e-6, vmapped batch 32."""
    rlax = pytest.importorskip("rlax")
    rng = np.random.default_rng(n)
    batch = [random_trajectory(rng, n, big_rho=True) for _ in range(32)]
    args = [jnp.asarray(np.stack(x)) for x in zip(*batch, strict=True)]
    lam = jnp.asarray(rng.uniform(0.5, 1, (32, n)), jnp.float32)
    for scan_impl in SCAN_IMPLS:
        ours = jax.vmap(
            lambda *a, s=scan_impl: vtrace_td_error_and_advantage(
                *a, clip_rho_threshold=1.5, clip_pg_rho_threshold=1.2, scan_impl=s
            )
        )(*args, lam)
        theirs = jax.vmap(
            lambda *a: rlax.vtrace_td_error_and_advantage(
                *a, clip_rho_threshold=1.5, clip_pg_rho_threshold=1.2
            )
        )(*args, lam)
        for name in ("errors", "pg_advantage", "q_estimate"):
            np.testing.assert_allclose(
                getattr(ours, name), getattr(theirs, name), atol=1e-6, rtol=1e-6
            )
