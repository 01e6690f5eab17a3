"""Sparse GP primitives against NumPy: the SE kernel, exact GP regression recovered by the
sparse conditional, the prior, and the Gaussian KL."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sequence.gp import (
    gauss_kl,
    se_kernel,
    sparse_gp_conditional,
    sparse_gp_precompute,
    sparse_gp_predict,
    sparse_gp_predict_given_z,
    sparse_gp_sample_weights,
)


def np_se(a, b, var, ls):
    d = (a[:, None, :] - b[None, :, :]) / ls
    return var * np.exp(-0.5 * np.sum(d**2, -1))


def test_se_kernel_matches_brute_force():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 3)), rng.normal(size=(5, 3))
    ls = np.array([0.5, 1.0, 2.0])
    with jax.enable_x64(True):
        k = se_kernel(jnp.asarray(a), jnp.asarray(b), 1.7, jnp.asarray(ls))
        np.testing.assert_allclose(np.asarray(k), np_se(a, b, 1.7, ls), rtol=1e-12, atol=1e-14)
    # a hand value: one dimension, distance 1, length-scale 2 -> exp(-1/8)
    k1 = se_kernel(jnp.array([[0.0]]), jnp.array([[1.0]]), 2.0, jnp.array([2.0]))
    np.testing.assert_allclose(float(k1[0, 0]), 2.0 * np.exp(-0.125), rtol=1e-6)


def test_sparse_conditional_with_optimal_q_at_data_is_exact_gp_regression():
    """Inducing inputs at the data and q(z) the exact posterior of f there: the sparse
    marginal equals exact GP regression's predictive mean and variance of f."""
    rng = np.random.default_rng(1)
    X = rng.uniform(-2, 2, size=(12, 2))
    y = np.sin(X[:, 0]) + 0.3 * X[:, 1] + 0.1 * rng.normal(size=12)
    Xs = rng.uniform(-2.5, 2.5, size=(9, 2))
    var, ls, noise = 1.3, np.array([0.8, 1.5]), 0.05
    K = np_se(X, X, var, ls)
    Ks = np_se(X, Xs, var, ls)
    G = np.linalg.inv(K + noise * np.eye(12))
    mean_exact = Ks.T @ G @ y
    var_exact = var - np.sum(Ks * (G @ Ks), 0)
    q_mu = K @ G @ y
    S = K - K @ G @ K
    q_sqrt = np.linalg.cholesky(S + 1e-12 * np.eye(12))
    with jax.enable_x64(True):
        mean, v = sparse_gp_conditional(
            jnp.asarray(Xs),
            jnp.asarray(X),
            jnp.asarray(q_mu),
            jnp.asarray(q_sqrt),
            var,
            jnp.asarray(ls),
            jitter=1e-12,
        )
        np.testing.assert_allclose(np.asarray(mean), mean_exact, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(np.asarray(v), var_exact, rtol=1e-5, atol=1e-8)


def test_sparse_conditional_with_prior_q_is_the_prior():
    rng = np.random.default_rng(2)
    Z, Xs = rng.normal(size=(6, 2)), rng.normal(size=(4, 2))
    K = np_se(Z, Z, 0.7, np.ones(2))
    with jax.enable_x64(True):
        mean, v = sparse_gp_conditional(
            jnp.asarray(Xs),
            jnp.asarray(Z),
            jnp.zeros(6),
            jnp.asarray(np.linalg.cholesky(K + 1e-10 * np.eye(6))),
            0.7,
            jnp.ones(2),
            jitter=1e-10,
        )
        np.testing.assert_allclose(np.asarray(mean), 0.0, atol=1e-12)
        np.testing.assert_allclose(np.asarray(v), 0.7, rtol=1e-6)


def test_precompute_then_predict_equals_conditional_and_reads_lower_triangle_only():
    rng = np.random.default_rng(3)
    Z, Xs = jnp.asarray(rng.normal(size=(5, 3))), jnp.asarray(rng.normal(size=(8, 3)))
    mu = jnp.asarray(rng.normal(size=5))
    Ls = np.tril(rng.normal(size=(5, 5))) * 0.3
    junk = Ls + np.triu(rng.normal(size=(5, 5)), 1)  # the upper triangle must be ignored
    ls = jnp.asarray([0.9, 1.1, 1.3])
    a = sparse_gp_conditional(Xs, Z, mu, jnp.asarray(Ls), 1.1, ls)
    b = sparse_gp_predict(sparse_gp_precompute(Z, mu, jnp.asarray(junk), 1.1, ls), Xs)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)


def test_conditional_given_z_matches_numpy_and_its_spread_over_q_is_the_marginal():
    """p(f | x, z) = N(k^T K^-1 z, k(x,x) - k^T K^-1 k) against NumPy for per-input z_n =
    q_mu + q_sqrt eps_n; and with eps running over the P unit vectors, the squared
    deviations of the conditional means from that at eps = 0 sum to the variance the
    marginal adds over the conditional, k^T K^-1 S K^-1 k (exact, no sampling)."""
    rng = np.random.default_rng(5)
    P, N = 6, 7
    Z, Xs = rng.normal(size=(P, 2)), rng.normal(size=(N, 2))
    mu, Ls = rng.normal(size=P), np.tril(rng.normal(size=(P, P))) * 0.4
    var, ls, jitter = 0.8, np.array([0.9, 1.4]), 1e-8
    eps = rng.normal(size=(N, P))
    K = np_se(Z, Z, var, ls) + jitter * var * np.eye(P)
    k = np_se(Z, Xs, var, ls)  # [P, N]
    z = mu[None] + eps @ Ls.T  # [N, P]
    mean_np = np.einsum("pn,pn->n", k, np.linalg.solve(K, z.T))
    var_np = var - np.einsum("pn,pn->n", k, np.linalg.solve(K, k))
    with jax.enable_x64(True):
        cache = sparse_gp_precompute(
            jnp.asarray(Z), jnp.asarray(mu), jnp.asarray(Ls), var, jnp.asarray(ls), jitter
        )
        w = sparse_gp_sample_weights(cache, jnp.asarray(eps))
        np.testing.assert_allclose(np.asarray(w), np.linalg.solve(K, z.T).T, rtol=1e-7)
        mean, v = sparse_gp_predict_given_z(cache, jnp.asarray(Xs), w)
        np.testing.assert_allclose(np.asarray(mean), mean_np, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(np.asarray(v), var_np, rtol=1e-7, atol=1e-10)
        x1 = jnp.asarray(np.repeat(Xs[:1], P + 1, 0))
        w_unit = sparse_gp_sample_weights(cache, jnp.asarray(np.vstack([np.zeros(P), np.eye(P)])))
        m_unit, v_unit = sparse_gp_predict_given_z(cache, x1, w_unit)
        m_marg, v_marg = sparse_gp_predict(cache, x1[:1])
        np.testing.assert_allclose(float(m_unit[0]), float(m_marg[0]), rtol=1e-9)
        spread = float(np.sum((np.asarray(m_unit[1:]) - float(m_unit[0])) ** 2))
        np.testing.assert_allclose(spread + float(v_unit[0]), float(v_marg[0]), rtol=1e-7)
        with pytest.raises(ValueError, match="weights_NP"):
            sparse_gp_predict_given_z(cache, jnp.asarray(Xs), w[:3])


def test_gauss_kl_matches_numpy_formula_and_is_zero_for_equal_gaussians():
    rng = np.random.default_rng(4)
    P = 6
    A = rng.normal(size=(P, P))
    K = A @ A.T + P * np.eye(P)
    Ls = np.tril(rng.normal(size=(P, P)))
    np.fill_diagonal(Ls, np.abs(np.diag(Ls)) + 0.5)
    mu = rng.normal(size=P)
    S = Ls @ Ls.T
    Ki = np.linalg.inv(K)
    expected = 0.5 * (
        np.trace(Ki @ S) + mu @ Ki @ mu - P + np.linalg.slogdet(K)[1] - np.linalg.slogdet(S)[1]
    )
    with jax.enable_x64(True):
        kl = gauss_kl(jnp.asarray(mu), jnp.asarray(Ls), jnp.asarray(K))
        np.testing.assert_allclose(float(kl), expected, rtol=1e-10)
        zero = gauss_kl(jnp.zeros(P), jnp.asarray(np.linalg.cholesky(K)), jnp.asarray(K))
        np.testing.assert_allclose(float(zero), 0.0, atol=1e-10)


def test_shape_errors_name_the_arguments():
    with pytest.raises(ValueError, match="x1_ND"):
        se_kernel(jnp.zeros((3, 2)), jnp.zeros((3, 4)), 1.0, 1.0)
    with pytest.raises(ValueError, match="q_sqrt_PP"):
        sparse_gp_conditional(
            jnp.zeros((3, 2)), jnp.zeros((4, 2)), jnp.zeros(4), jnp.eye(3), 1.0, jnp.ones(2)
        )
    with pytest.raises(ValueError, match="K_PP"):
        gauss_kl(jnp.zeros(3), jnp.eye(3), jnp.eye(4))
