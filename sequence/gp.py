"""Sparse Gaussian-process primitives: the squared-exponential kernel, the sparse GP
conditional given inducing points, and KL(q(z) || p(z)).

Single file, imports only jax: copy it into your own repo. Shapes are in the names
(`x_ND`: N points of dimension D, `zeta_PD`: P inducing inputs). One GP per call; for
several independent GPs (PR-SSM's one GP per latent dimension) `jax.vmap` over their
parameters.

Papers: Rasmussen & Williams 2006 (eq. 2.31, the SE kernel with ARD length-scales);
Titsias 2009 and Hensman et al. 2013 (the sparse variational GP); Doerr et al. 2018,
"Probabilistic Recurrent State-Space Models", background on sparse GPs (the predictive mean
and variance used by PR-SSM's transition model).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


def se_kernel(
    x1_ND: jax.Array, x2_MD: jax.Array, variance: jax.Array, lengthscales_D: jax.Array
) -> jax.Array:
    """Squared-exponential kernel with one length-scale per input dimension (ARD).

    k(x, x') = variance * exp(-0.5 * sum_d (x_d - x'_d)^2 / l_d^2)
    (Rasmussen & Williams 2006, eq. 2.31 with ARD; Doerr et al. 2018, background on GPs).

    Args:
      x1_ND: [N, D] inputs.
      x2_MD: [M, D] inputs.
      variance: [] signal variance sigma_f^2 (positive).
      lengthscales_D: [D] length-scales (positive), or a scalar for all dimensions.
    Returns:
      [N, M] kernel matrix.
    """
    if x1_ND.ndim != 2 or x2_MD.ndim != 2 or x1_ND.shape[1] != x2_MD.shape[1]:
        raise ValueError(
            f"se_kernel: x1_ND and x2_MD must be [N, D] and [M, D] with the same D, got "
            f"{x1_ND.shape} and {x2_MD.shape}"
        )
    a = x1_ND / lengthscales_D
    b = x2_MD / lengthscales_D
    # |a - b|^2 written as a distance matrix, clipped at 0 against round-off
    sq = jnp.sum(a**2, -1)[:, None] + jnp.sum(b**2, -1)[None, :] - 2.0 * a @ b.T
    return variance * jnp.exp(-0.5 * jnp.maximum(sq, 0.0))


def se_kernel_diag(x_ND: jax.Array, variance: jax.Array) -> jax.Array:
    """The diagonal k(x_n, x_n) = variance of the SE kernel: [N]."""
    return jnp.full(x_ND.shape[:1], variance, dtype=x_ND.dtype)


class SparseGPCache(NamedTuple):
    """What `sparse_gp_predict` needs, computed once per parameter value (not per input):
    Linv = L^{-1} with L L^T = K, alpha = K^{-1} q_mu, R = q_sqrt^T K^{-1}."""

    zeta_PD: jax.Array
    Linv_PP: jax.Array
    alpha_P: jax.Array
    R_PP: jax.Array
    variance: jax.Array
    lengthscales_D: jax.Array


def sparse_gp_precompute(
    zeta_PD: jax.Array,
    q_mu_P: jax.Array,
    q_sqrt_PP: jax.Array,
    variance: jax.Array,
    lengthscales_D: jax.Array,
    jitter: float = 1e-6,
) -> SparseGPCache:
    """Factorise K = k(zeta, zeta) + jitter * variance * I once, so that every later
    prediction is two matrix products (see `sparse_gp_conditional` for the maths).

    Args:
      zeta_PD: [P, D] inducing inputs; q_mu_P: [P]; q_sqrt_PP: [P, P] lower-triangular
      (only the lower triangle is read); variance: []; lengthscales_D: [D].
    """
    P = zeta_PD.shape[0]
    if q_mu_P.shape != (P,) or q_sqrt_PP.shape != (P, P):
        raise ValueError(
            f"sparse_gp_conditional: with {P} inducing inputs q_mu_P must be [{P}] and "
            f"q_sqrt_PP [{P}, {P}], got {q_mu_P.shape} and {q_sqrt_PP.shape}"
        )
    K_PP = se_kernel(zeta_PD, zeta_PD, variance, lengthscales_D)
    eye = jnp.eye(P, dtype=K_PP.dtype)
    L_PP = jnp.linalg.cholesky(K_PP + jitter * variance * eye)
    Linv_PP = jax.scipy.linalg.solve_triangular(L_PP, eye, lower=True)
    Kinv_PP = Linv_PP.T @ Linv_PP
    return SparseGPCache(
        zeta_PD=zeta_PD,
        Linv_PP=Linv_PP,
        alpha_P=Kinv_PP @ q_mu_P,
        R_PP=jnp.tril(q_sqrt_PP).T @ Kinv_PP,
        variance=variance,
        lengthscales_D=lengthscales_D,
    )


def sparse_gp_predict(cache: SparseGPCache, x_ND: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(mean [N], var [N]) of f at x_ND from a `sparse_gp_precompute` cache."""
    k_PN = se_kernel(cache.zeta_PD, x_ND, cache.variance, cache.lengthscales_D)
    mean_N = k_PN.T @ cache.alpha_P
    var_N = (
        se_kernel_diag(x_ND, cache.variance)
        - jnp.sum((cache.Linv_PP @ k_PN) ** 2, 0)
        + jnp.sum((cache.R_PP @ k_PN) ** 2, 0)
    )
    return mean_N, jnp.maximum(var_N, 0.0)


def sparse_gp_sample_weights(cache: SparseGPCache, eps_NP: jax.Array) -> jax.Array:
    """K^{-1} z_n for N draws z_n = q_mu + q_sqrt eps_n ~ q(z) from standard normal eps_NP
    [N, P]: the weights `sparse_gp_predict_given_z` takes ([N, P]; K^{-1} z_n =
    alpha + R^T eps_n with the cache's alpha = K^{-1} q_mu and R = q_sqrt^T K^{-1})."""
    return cache.alpha_P[None] + eps_NP @ cache.R_PP


def sparse_gp_predict_given_z(
    cache: SparseGPCache, x_ND: jax.Array, weights_NP: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """(mean [N], var [N]) of the GP conditional p(f(x_n) | z_n), one z_n per input:
        mean = k_n^T K^{-1} z_n,   var = k(x_n, x_n) - k_n^T K^{-1} k_n
    with k_n = k(zeta, x_n) (Titsias 2009; the p(f_t | x_{t-1}, z) of Doerr et al. 2018,
    eq. (8)). Averaged over z_n ~ q(z) its moments are `sparse_gp_predict`'s marginal.

    Args:
      cache: `sparse_gp_precompute(...)` (its q_mu and q_sqrt are not used here).
      x_ND: [N, D] inputs.
      weights_NP: [N, P] K^{-1} z_n (`sparse_gp_sample_weights`).
    """
    k_PN = se_kernel(cache.zeta_PD, x_ND, cache.variance, cache.lengthscales_D)
    if weights_NP.shape != k_PN.T.shape:
        raise ValueError(
            f"sparse_gp_predict_given_z: weights_NP must be [{k_PN.shape[1]}, "
            f"{k_PN.shape[0]}] (one row per input), got {weights_NP.shape}"
        )
    mean_N = jnp.sum(k_PN.T * weights_NP, -1)
    var_N = se_kernel_diag(x_ND, cache.variance) - jnp.sum((cache.Linv_PP @ k_PN) ** 2, 0)
    return mean_N, jnp.maximum(var_N, 0.0)


def sparse_gp_conditional(
    x_ND: jax.Array,
    zeta_PD: jax.Array,
    q_mu_P: jax.Array,
    q_sqrt_PP: jax.Array,
    variance: jax.Array,
    lengthscales_D: jax.Array,
    jitter: float = 1e-6,
) -> tuple[jax.Array, jax.Array]:
    """Marginal of f(x) under the sparse variational GP, with z integrated out of q.

    With K = k(zeta, zeta), k_x = k(zeta, x) and a = K^{-1} k_x, the GP conditional given
    inducing outputs z is p(f | x, z) = N(a^T z, k(x, x) - a^T K a); with
    q(z) = N(q_mu, S), S = q_sqrt q_sqrt^T, the marginal over z is
        mean(x) = a^T q_mu,
        var(x)  = k(x, x) - a^T K a + a^T S a
    (Titsias 2009; Hensman et al. 2013, eq. 7; Doerr et al. 2018, background on sparse GPs, and the
    marginal q(f_t | x_{t-1}) used in their eq. (19)). Zero prior mean: add a mean
    function to the returned mean yourself. To predict many times with the same
    parameters (inside a scan over time), call `sparse_gp_precompute` once and
    `sparse_gp_predict` in the loop: this function is exactly their composition.

    Args:
      x_ND: [N, D] test inputs.
      zeta_PD: [P, D] inducing inputs.
      q_mu_P: [P] mean of q(z).
      q_sqrt_PP: [P, P] lower-triangular square root of the covariance of q(z) (only its
        lower triangle is read).
      variance: [] SE signal variance.
      lengthscales_D: [D] SE length-scales.
      jitter: added (times variance) to K's diagonal before the Cholesky factorisation.
    Returns:
      (mean [N], var [N]) of f at x_ND.
    """
    cache = sparse_gp_precompute(zeta_PD, q_mu_P, q_sqrt_PP, variance, lengthscales_D, jitter)
    return sparse_gp_predict(cache, x_ND)


def gauss_kl(q_mu_P: jax.Array, q_sqrt_PP: jax.Array, K_PP: jax.Array) -> jax.Array:
    """KL(N(q_mu, S) || N(0, K)) with S = q_sqrt q_sqrt^T.

    KL = 0.5 * (tr(K^{-1} S) + q_mu^T K^{-1} q_mu - P + log det K - log det S)
    (the KL(q(z) || p(z)) term of Doerr et al. 2018, eq. (17); Hensman et al. 2013).

    Args:
      q_mu_P: [P] mean of q.
      q_sqrt_PP: [P, P] lower-triangular square root of q's covariance (positive
        diagonal; only the lower triangle is read).
      K_PP: [P, P] prior covariance (positive definite; add jitter before calling).
    Returns:
      [] the KL divergence.
    """
    P = q_mu_P.shape[0]
    if q_sqrt_PP.shape != (P, P) or K_PP.shape != (P, P):
        raise ValueError(
            f"gauss_kl: q_mu_P is [{P}], so q_sqrt_PP and K_PP must be [{P}, {P}], got "
            f"{q_sqrt_PP.shape} and {K_PP.shape}"
        )
    S_sqrt = jnp.tril(q_sqrt_PP)
    L = jnp.linalg.cholesky(K_PP)
    LinvS = jax.scipy.linalg.solve_triangular(L, S_sqrt, lower=True)
    Linvmu = jax.scipy.linalg.solve_triangular(L, q_mu_P, lower=True)
    trace = jnp.sum(LinvS**2)
    maha = jnp.sum(Linvmu**2)
    logdet_K = 2.0 * jnp.sum(jnp.log(jnp.diag(L)))
    logdet_S = 2.0 * jnp.sum(jnp.log(jnp.abs(jnp.diag(S_sqrt))))
    return 0.5 * (trace + maha - P + logdet_K - logdet_S)
