"""Multi-step returns against brute-force NumPy sums, with terminations inside trajectories."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlax_zoo import multistep


def ref_n_step(r, d, v, n, lam=1.0):
    """Brute force: for each i unroll G = r + d((1-lam) v + lam G') over min(n, T-i) steps."""
    t_len = len(r)
    out = np.zeros(t_len)
    for i in range(t_len):
        last = min(i + n - 1, t_len - 1)
        g = r[last] + d[last] * v[last]
        for j in range(last - 1, i - 1, -1):
            g = r[j] + d[j] * ((1 - lam) * v[j] + lam * g)
        out[i] = g
    return out


def ref_n_step_sum(r, d, v, n):
    """The explicit sum form: sum_k (prod_{j<k} d) r_{i+k} + (prod d) v_{last}."""
    t_len = len(r)
    out = np.zeros(t_len)
    for i in range(t_len):
        g, disc = 0.0, 1.0
        for k in range(i, min(i + n, t_len)):
            g += disc * r[k]
            disc *= d[k]
        out[i] = g + disc * v[min(i + n, t_len) - 1]
    return out


def test_hand_computed_two_step():
    r = jnp.array([1.0, 2.0, 3.0])
    d = jnp.array([0.5, 0.0, 0.5])  # episode terminates at step 2
    v = jnp.array([10.0, 20.0, 30.0])
    g = multistep.n_step_bootstrapped_returns(r, d, v, n=2)
    # G0 = 1 + .5*(2 + 0*20) = 2 ; G1 = 2 + 0*(...) = 2 ; G2 = 3 + .5*30 = 18
    np.testing.assert_allclose(g, [2.0, 2.0, 18.0])


def test_lambda_returns_hand_computed():
    r = jnp.array([1.0, 1.0])
    d = jnp.array([0.9, 0.9])
    v = jnp.array([2.0, 4.0])
    g = multistep.lambda_returns(r, d, v, lambda_=0.5)
    g1 = 1 + 0.9 * 4.0
    g0 = 1 + 0.9 * (0.5 * 2.0 + 0.5 * g1)
    np.testing.assert_allclose(g, [g0, g1], rtol=1e-6)


@settings(deadline=None, max_examples=30)
@given(
    t_len=st.integers(1, 12),
    n=st.integers(1, 15),
    seed=st.integers(0, 2**16),
    lam=st.sampled_from([1.0, 0.0, 0.7]),
)
def test_n_step_matches_bruteforce(t_len, n, seed, lam):
    rng = np.random.default_rng(seed)
    r = rng.normal(size=t_len).astype(np.float32)
    d = np.where(rng.random(t_len) < 0.2, 0.0, 0.95).astype(np.float32)
    v = rng.normal(size=t_len).astype(np.float32)
    g = multistep.n_step_bootstrapped_returns(jnp.array(r), jnp.array(d), jnp.array(v), n, lam)
    np.testing.assert_allclose(g, ref_n_step(r, d, v, n, lam), rtol=1e-5, atol=1e-5)
    if lam == 1.0:
        np.testing.assert_allclose(g, ref_n_step_sum(r, d, v, n), rtol=1e-5, atol=1e-5)


def test_special_cases_agree():
    rng = np.random.default_rng(3)
    r, v = (jnp.array(rng.normal(size=9), jnp.float32) for _ in range(2))
    d = jnp.full(9, 0.9, jnp.float32).at[4].set(0.0)
    one_step = multistep.n_step_bootstrapped_returns(r, d, v, 1)
    np.testing.assert_allclose(one_step, r + d * v, rtol=1e-6)
    lam0 = multistep.lambda_returns(r, d, v, 0.0)
    np.testing.assert_allclose(lam0, r + d * v, rtol=1e-6)
    # lambda=1 returns equal n-step returns with n >= T, and discounted returns
    np.testing.assert_allclose(
        multistep.lambda_returns(r, d, v, 1.0),
        multistep.n_step_bootstrapped_returns(r, d, v, 20),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        multistep.discounted_returns(r, d, v), multistep.lambda_returns(r, d, v, 1.0), rtol=1e-6
    )
    # termination at index 4: returns before it do not depend on anything after it
    g = multistep.lambda_returns(r, d, v, 1.0)
    g2 = multistep.lambda_returns(r.at[5:].set(100.0), d, v.at[5:].set(-7.0), 1.0)
    np.testing.assert_allclose(g[:5], g2[:5], rtol=1e-6)


def test_truncation_bootstraps_from_last_value():
    # a trajectory cut by a time limit keeps discount gamma: the final value matters
    r = jnp.zeros(3)
    d = jnp.full(3, 0.5)
    g_a = multistep.discounted_returns(r, d, jnp.array([0.0, 0.0, 8.0]))
    np.testing.assert_allclose(g_a, [1.0, 2.0, 4.0])


def test_jit_vmap_and_bad_n():
    f = jax.jit(jax.vmap(lambda r, d, v: multistep.n_step_bootstrapped_returns(r, d, v, 3)))
    x = jnp.ones((4, 6))
    assert f(x, x, x).shape == (4, 6)
    with pytest.raises(ValueError, match="n must be >= 1"):
        multistep.n_step_bootstrapped_returns(x[0], x[0], x[0], 0)
