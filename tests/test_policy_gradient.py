"""Policy-gradient losses: hand-computed values, gradient flow, n-step advantages against NumPy,
and the policy-gradient theorem (Sutton et al. 2000, Theorems 1 and 2) on random tabular MDPs,
checked exactly (float64 linear algebra) and by Monte Carlo (REINFORCE over sampled episodes)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlax_zoo import policy_gradient as pg

LN2 = math.log(2.0)
# Two states, two actions: pi(.|s_0) = [1/2, 1/2], pi(.|s_1) = [3/4, 1/4].
LOGITS = jnp.array([[0.0, 0.0], [math.log(3.0), 0.0]])
ACTIONS = jnp.array([0, 1], jnp.int32)  # log pi(a_t|s_t) = [ln 1/2, ln 1/4] = [-ln 2, -2 ln 2]
H1 = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))  # entropy of pi(.|s_1); H(s_0) = ln 2
ONES = jnp.ones(2)


# ----------------------------------------------------------------------------------------------
# Distributions and losses, hand-computed.


def test_categorical_policy():
    policy = pg.categorical_policy(LOGITS)
    np.testing.assert_allclose(policy.log_prob(ACTIONS), [-LN2, -2 * LN2], rtol=1e-6)
    np.testing.assert_allclose(policy.entropy(), [LN2, H1], rtol=1e-6)
    with pytest.raises(ValueError, match="logits"):
        pg.categorical_policy(jnp.float32(1.0))


def test_gaussian_policy_values_and_validation():
    mean, log_std = jnp.array([0.0, 1.0]), jnp.array([0.0, LN2])
    policy = pg.gaussian_policy(mean, log_std)
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    # x = [1, 1]: dim 0 is one std away, dim 1 sits on the mean with std 2.
    expected = (-0.5 - half_log_2pi) + (-LN2 - half_log_2pi)
    np.testing.assert_allclose(policy.log_prob(jnp.array([1.0, 1.0])), expected, rtol=1e-6)
    np.testing.assert_allclose(policy.entropy(), math.log(2 * math.pi * math.e) + LN2, rtol=1e-6)
    # log_std is clipped into [min_log_std, max_log_std].
    wide = pg.gaussian_policy(mean, jnp.array([5.0, -50.0]))
    np.testing.assert_allclose(wide.stddev(), [math.exp(2.0), math.exp(-20.0)], rtol=1e-5)
    with pytest.raises(ValueError, match="log_std"):
        pg.gaussian_policy(mean, jnp.array([0.0, jnp.inf]))
    with pytest.raises(ValueError, match="mean"):
        pg.gaussian_policy(jnp.array([jnp.nan, 0.0]), log_std)
    with pytest.raises(ValueError, match="min_log_std"):
        pg.gaussian_policy(mean, log_std, min_log_std=1.0, max_log_std=0.0)
    with pytest.raises(AssertionError):
        pg.gaussian_policy(mean, jnp.zeros(3))
    # Under jit the value check is skipped (traced) and sampling works.
    sample = jax.jit(lambda m, s, k: pg.gaussian_policy(m, s).sample(seed=k))(
        mean, log_std, jax.random.PRNGKey(0)
    )
    assert sample.shape == (2,)


def test_policy_gradient_loss_hand_computed():
    adv = jnp.array([2.0, 4.0])
    # -(1/2)(2 * -ln2 + 4 * -2ln2) = 5 ln2 ; with w = [1, 1/2]: -(1/2)(-2ln2 - 4ln2) = 3 ln2
    np.testing.assert_allclose(pg.policy_gradient_loss(LOGITS, ACTIONS, adv, ONES), 5 * LN2)
    w = jnp.array([1.0, 0.5])
    np.testing.assert_allclose(pg.policy_gradient_loss(LOGITS, ACTIONS, adv, w), 3 * LN2)
    # d loss / d logits_t = -w_t adv_t (onehot(a_t) - pi_t) / T
    grad = jax.grad(pg.policy_gradient_loss)(LOGITS, ACTIONS, adv, w)
    np.testing.assert_allclose(grad, [[-0.5, 0.5], [0.75, -0.75]], rtol=1e-6)


def test_policy_gradient_loss_stop_gradient():
    adv, w = jnp.array([2.0, 4.0]), jnp.array([1.0, 0.5])
    grad_adv = jax.grad(pg.policy_gradient_loss, argnums=2)
    assert np.all(grad_adv(LOGITS, ACTIONS, adv, w) == 0.0)
    # without the stop: d/d adv_t = -w_t log pi(a_t|s_t) / T = [ln2 / 2, ln2 / 2]
    g = grad_adv(LOGITS, ACTIONS, adv, w, False)
    np.testing.assert_allclose(g, [LN2 / 2, 0.5 * 2 * LN2 / 2], rtol=1e-6)


def test_reinforce_and_baseline_losses():
    returns, baseline = jnp.array([3.0, 1.0]), jnp.array([1.0, -3.0])  # G - b = [2, 4]
    loss = pg.reinforce_loss(LOGITS, ACTIONS, returns, baseline, ONES)
    np.testing.assert_allclose(loss, 5 * LN2, rtol=1e-6)
    # No gradient reaches the baseline or the returns through the policy-gradient term.
    g_ret, g_base = jax.grad(pg.reinforce_loss, argnums=(2, 3))(
        LOGITS, ACTIONS, returns, baseline, ONES
    )
    assert np.all(g_ret == 0.0) and np.all(g_base == 0.0)
    np.testing.assert_allclose(
        jax.grad(pg.reinforce_loss)(LOGITS, ACTIONS, returns, baseline, ONES),
        jax.grad(pg.policy_gradient_loss)(LOGITS, ACTIONS, returns - baseline, ONES),
    )
    # baseline loss: mean(w 0.5 (G - b)^2) with b = [1, 2], w = [1, 1/2]: (2 + 0.25) / 2
    baseline, w = jnp.array([1.0, 2.0]), jnp.array([1.0, 0.5])
    np.testing.assert_allclose(pg.baseline_loss(returns, baseline, w), 1.125)
    g_ret, g_base = jax.grad(pg.baseline_loss, argnums=(0, 1))(returns, baseline, w)
    assert np.all(g_ret == 0.0)
    np.testing.assert_allclose(g_base, [-1.0, 0.25])  # -w (G - b) / T


def test_entropy_losses():
    np.testing.assert_allclose(pg.entropy_loss(LOGITS, ONES), -(LN2 + H1) / 2, rtol=1e-6)
    np.testing.assert_allclose(
        pg.distribution_entropy_loss(pg.categorical_policy(LOGITS), ONES),
        -(LN2 + H1) / 2,
        rtol=1e-6,
    )
    # An illegal action (logit -inf) contributes 0 to the entropy, and gradients stay finite.
    masked = jnp.array([[0.0, -jnp.inf, 0.0]])
    np.testing.assert_allclose(pg.entropy_loss(masked, jnp.ones(1)), -LN2, rtol=1e-6)
    assert np.all(np.isfinite(jax.grad(pg.entropy_loss)(masked, jnp.ones(1))))
    # Gaussian: H = sum_d log_std_d + 0.5 log(2 pi e)
    log_std = jnp.array([[0.0, LN2], [1.0, -1.0]])
    policy = pg.gaussian_policy(jnp.zeros((2, 2)), log_std)
    expected = -np.mean([LN2, 0.0]) - math.log(2 * math.pi * math.e)
    np.testing.assert_allclose(pg.distribution_entropy_loss(policy, ONES), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="batch_shape"):
        pg.distribution_entropy_loss(policy, jnp.ones(3))


def test_distribution_policy_gradient_loss():
    adv, w = jnp.array([2.0, 4.0]), jnp.array([1.0, 0.5])
    np.testing.assert_allclose(
        pg.distribution_policy_gradient_loss(pg.categorical_policy(LOGITS), ACTIONS, adv, w),
        pg.policy_gradient_loss(LOGITS, ACTIONS, adv, w),
        rtol=1e-6,
    )
    # Gaussian, unit std: d/d mean_t of -mean_t(w adv log N(a; mean, 1)) = -w adv (a - mean) / T
    mean, a = jnp.array([[0.0], [1.0]]), jnp.array([[1.0], [0.0]])

    def loss(mean):
        policy = pg.gaussian_policy(mean, jnp.zeros_like(mean))
        return pg.distribution_policy_gradient_loss(policy, a, adv, w)

    np.testing.assert_allclose(jax.grad(loss)(mean), [[-1.0], [1.0]], rtol=1e-6)
    with pytest.raises(AssertionError):
        pg.distribution_policy_gradient_loss(pg.categorical_policy(LOGITS), a, adv, w)


def test_advantage_actor_critic_loss_hand_computed():
    returns, v = jnp.array([3.0, 1.0]), jnp.array([1.0, -3.0])  # advantages [2, 4]
    total, parts = pg.advantage_actor_critic_loss(
        LOGITS, ACTIONS, v, returns, ONES, entropy_cost=0.1, value_cost=0.5
    )
    np.testing.assert_allclose(parts["policy_loss"], 5 * LN2, rtol=1e-6)
    np.testing.assert_allclose(parts["value_loss"], (0.5 * 4 + 0.5 * 16) / 2, rtol=1e-6)
    np.testing.assert_allclose(parts["entropy"], (LN2 + H1) / 2, rtol=1e-6)
    np.testing.assert_allclose(parts["entropy_loss"], -(LN2 + H1) / 2, rtol=1e-6)
    np.testing.assert_allclose(parts["advantage_mean"], 3.0, rtol=1e-6)
    np.testing.assert_allclose(total, 5 * LN2 + 0.5 * 5.0 - 0.1 * (LN2 + H1) / 2, rtol=1e-6)

    def total_loss(logits, v, returns):
        return pg.advantage_actor_critic_loss(logits, ACTIONS, v, returns, ONES, 0.1, 0.5)[0]

    g_logits, g_v, g_ret = jax.grad(total_loss, argnums=(0, 1, 2))(LOGITS, v, returns)
    # The critic only learns from the value term: value_cost * -(R - V) / T.
    np.testing.assert_allclose(g_v, [-0.5, -1.0], rtol=1e-6)
    assert np.all(g_ret == 0.0)
    # The actor gets the policy term (stop-gradient advantage) plus the entropy bonus.
    expected = jax.grad(pg.policy_gradient_loss)(LOGITS, ACTIONS, returns - v, ONES)
    expected += 0.1 * jax.grad(pg.entropy_loss)(LOGITS, ONES)
    np.testing.assert_allclose(g_logits, expected, rtol=1e-6)


def test_advantage_actor_critic_vmap_jit_matches_loop():
    rng = np.random.default_rng(0)
    b, t, a = 4, 6, 3
    logits = jnp.asarray(rng.normal(size=(b, t, a)), jnp.float32)
    actions = jnp.asarray(rng.integers(0, a, size=(b, t)), jnp.int32)
    v, returns = jnp.asarray(rng.normal(size=(2, b, t)), jnp.float32)
    w = jnp.asarray(rng.random((b, t)) > 0.2, jnp.float32)
    batched = jax.jit(jax.vmap(pg.advantage_actor_critic_loss))(logits, actions, v, returns, w)
    single = jax.jit(pg.advantage_actor_critic_loss)
    for i in range(b):
        total, parts = single(logits[i], actions[i], v[i], returns[i], w[i])
        np.testing.assert_allclose(batched[0][i], total, rtol=1e-5)
        np.testing.assert_allclose(batched[1]["value_loss"][i], parts["value_loss"], rtol=1e-5)


def test_shape_and_dtype_checks():
    adv = jnp.array([2.0, 4.0])
    with pytest.raises(AssertionError):
        pg.policy_gradient_loss(LOGITS, ACTIONS, jnp.ones(3), jnp.ones(3))
    with pytest.raises(AssertionError):
        pg.policy_gradient_loss(LOGITS, ACTIONS.astype(jnp.float32), adv, ONES)
    with pytest.raises(AssertionError):
        pg.policy_gradient_loss(LOGITS[0], ACTIONS, adv, ONES)
    with pytest.raises(AssertionError):
        pg.advantage_actor_critic_loss(LOGITS, ACTIONS, jnp.ones(3), adv, ONES)


# ----------------------------------------------------------------------------------------------
# n-step advantages against a brute-force NumPy sum.


def ref_n_step_advantages(r, d, v_tm1, bootstrap, n):
    """A_i = sum_{k<m} (prod_{j<k} d_{i+j}) r_{i+k} + (prod_{j<m} d_{i+j}) V(s_{i+m}) - V(s_i)."""
    t_len = len(r)
    values = np.append(v_tm1, bootstrap)  # V(s_0) .. V(s_T)
    n = t_len if n is None else n
    out = np.zeros(t_len)
    for i in range(t_len):
        m = min(n, t_len - i)
        g, disc = 0.0, 1.0
        for k in range(m):
            g += disc * r[i + k]
            disc *= d[i + k]
        out[i] = g + disc * values[i + m] - values[i]
    return out


def test_n_step_advantages_hand_computed():
    r = jnp.array([1.0, 2.0, 3.0])
    d = jnp.array([0.5, 0.0, 0.5])  # the episode terminates on the second transition
    v = jnp.array([10.0, 20.0, 30.0])
    boot = jnp.float32(40.0)
    # n = 1: A_0 = 1 + .5*20 - 10 = 1 ; A_1 = 2 + 0 - 20 = -18 ; A_2 = 3 + .5*40 - 30 = -7
    np.testing.assert_allclose(pg.n_step_advantages(r, d, v, boot, 1), [1.0, -18.0, -7.0])
    # n = 2: A_0 = 1 + .5*(2 + 0*30) - 10 = -8 ; the others run off the end and bootstrap.
    np.testing.assert_allclose(pg.n_step_advantages(r, d, v, boot, 2), [-8.0, -18.0, -7.0])
    # No termination, n = None (A3C): A_0 = 1 + .5*2 + .25*3 + .125*40 - 10 = -2.25
    d = jnp.full(3, 0.5)
    adv = pg.n_step_advantages(r, d, v, boot)
    np.testing.assert_allclose(adv, [-2.25, 2 + 1.5 + 10 - 20, 3 + 20 - 30.0])
    for n in (3, 4, 100):  # n >= T is the same as n = None
        np.testing.assert_allclose(pg.n_step_advantages(r, d, v, boot, n), adv)


@settings(deadline=None, max_examples=40)
@given(
    t_len=st.integers(1, 12),
    n=st.one_of(st.none(), st.integers(1, 15)),
    seed=st.integers(0, 2**16),
    p_end=st.sampled_from([0.0, 0.3]),
)
def test_n_step_advantages_match_bruteforce(t_len, n, seed, p_end):
    rng = np.random.default_rng(seed)
    r, v = rng.normal(size=(2, t_len)).astype(np.float32)
    d = np.where(rng.random(t_len) < p_end, 0.0, 0.9).astype(np.float32)
    boot = np.float32(rng.normal())
    adv = pg.n_step_advantages(jnp.array(r), jnp.array(d), jnp.array(v), jnp.array(boot), n)
    np.testing.assert_allclose(adv, ref_n_step_advantages(r, d, v, boot, n), rtol=1e-5, atol=1e-5)


def test_n_step_advantages_gradients():
    r, v = jnp.array([1.0, 2.0, 3.0]), jnp.array([0.5, -1.0, 2.0])
    d, boot = jnp.array([0.9, 0.0, 0.9]), jnp.float32(1.5)
    jac = jax.jacobian(pg.n_step_advantages, argnums=(2, 3))
    # Stopped targets: the gradient only flows through -V(s_i).
    j_v, j_boot = jac(r, d, v, boot, 1)
    np.testing.assert_allclose(j_v, -np.eye(3))
    np.testing.assert_allclose(j_boot, 0.0)
    # Live targets with n = 1: A_i = r_i + d_i V(s_{i+1}) - V(s_i).
    j_v, j_boot = jac(r, d, v, boot, 1, False)
    np.testing.assert_allclose(j_v, -np.eye(3) + np.diag([0.9, 0.0], k=1), rtol=1e-6)
    np.testing.assert_allclose(j_boot, [0.0, 0.0, 0.9], rtol=1e-6)
    # Live targets with n = None: only V(s_T) is bootstrapped, cut by the termination.
    j_v, j_boot = jac(r, d, v, boot, None, False)
    np.testing.assert_allclose(j_v, -np.eye(3))
    np.testing.assert_allclose(j_boot, [0.0, 0.0, 0.9], rtol=1e-6)


def test_n_step_advantages_bad_input():
    r = jnp.ones(3)
    for n in (0, -1, 1.5):
        with pytest.raises(ValueError, match="n must be"):
            pg.n_step_advantages(r, r, r, jnp.float32(0.0), n)
    with pytest.raises(AssertionError):
        pg.n_step_advantages(r, r, jnp.ones(4), jnp.float32(0.0))
    with pytest.raises(AssertionError):
        pg.n_step_advantages(r, r, r, jnp.ones(1))


# ----------------------------------------------------------------------------------------------
# The policy-gradient theorem on random tabular MDPs, softmax policy pi(a|s) = softmax(theta[s]).

N_STATES, N_ACTIONS, GAMMA = 5, 3, 0.9


def random_mdp(seed):
    rng = np.random.default_rng(seed)
    p = rng.random((N_STATES, N_ACTIONS, N_STATES)) ** 3  # uneven transitions
    p /= p.sum(-1, keepdims=True)
    r = rng.normal(size=(N_STATES, N_ACTIONS))
    d0 = rng.random(N_STATES)
    d0 /= d0.sum()
    theta = rng.normal(size=(N_STATES, N_ACTIONS))
    return p, r, d0, theta


def policy_evaluation(theta, p, r, gamma=GAMMA):
    """pi, V^pi = (I - gamma P_pi)^{-1} r_pi, Q^pi = R + gamma P V^pi and P_pi, in closed form."""
    pi = jax.nn.softmax(theta, axis=-1)
    p_pi = jnp.einsum("sa,sat->st", pi, p)
    v = jnp.linalg.solve(jnp.eye(theta.shape[0]) - gamma * p_pi, jnp.sum(pi * r, axis=-1))
    q = r + gamma * jnp.einsum("sat,t->sa", p, v)
    return pi, v, q, p_pi


def start_value(theta, p, r, d0):
    """J(theta) = d0 . V^pi: the start-state objective rho of Sutton et al. 2000."""
    return d0 @ policy_evaluation(theta, p, r)[1]


def discounted_state_weighting(p_pi, d0, gamma=GAMMA):
    """d^pi(s) = sum_t gamma^t Pr(s_t = s), i.e. d^T = d0^T (I - gamma P_pi)^{-1}."""
    return jnp.linalg.solve((jnp.eye(p_pi.shape[0]) - gamma * p_pi).T, d0)


def softmax_jacobian(pi):
    """dpi[s, a, b] = d pi(a|s) / d theta[s, b] = pi(a|s) (1[a = b] - pi(b|s))."""
    return pi[:, :, None] * (jnp.eye(pi.shape[-1])[None] - pi[:, None, :])


@pytest.mark.parametrize("seed", range(4))
def test_policy_gradient_theorem_exact(seed):
    p, r, d0, theta = random_mdp(seed)
    with jax.enable_x64(True):
        p, r, d0, theta = map(jnp.asarray, (p, r, d0, theta))
        exact = jax.grad(start_value)(theta, p, r, d0)  # autodiff through the linear solve
        pi, v, q, p_pi = policy_evaluation(theta, p, r)
        d = discounted_state_weighting(p_pi, d0)
        np.testing.assert_allclose(d.sum(), 1.0 / (1.0 - GAMMA), rtol=1e-12)
        # The analytic softmax Jacobian agrees with autodiff (only same-state blocks are nonzero).
        full = jax.jacobian(lambda th: jax.nn.softmax(th, axis=-1))(theta)  # [S, A, S, A]
        blocks = jnp.einsum("sasb->sab", full)
        np.testing.assert_allclose(blocks, softmax_jacobian(pi), atol=1e-14)
        np.testing.assert_allclose(jnp.abs(full).sum(), jnp.abs(blocks).sum(), rtol=1e-12)
        # Theorem 1: d rho / d theta = sum_s d(s) sum_a d pi(a|s)/d theta Q(s, a)
        theorem_one = jnp.einsum("s,sab,sa->sb", d, softmax_jacobian(pi), q)
        np.testing.assert_allclose(theorem_one, exact, rtol=1e-9, atol=1e-12)
        # The same through the primitive: one "time step" per (s, a) pair, weighted by
        # d(s) pi(a|s) (a stopped constant), advantage Q(s, a); -T * grad(loss) = Theorem 1.
        s_idx, a_idx = jnp.divmod(jnp.arange(N_STATES * N_ACTIONS), N_ACTIONS)
        w = (d[:, None] * pi).reshape(-1) * s_idx.shape[0]

        def surrogate(th):
            return pg.policy_gradient_loss(th[s_idx], a_idx, q.reshape(-1), w)

        np.testing.assert_allclose(-jax.grad(surrogate)(theta), exact, rtol=1e-9, atol=1e-12)
        # Changing the state weighting to d0 (no discounted visitation) breaks the equality.
        wrong = jnp.einsum("s,sab,sa->sb", d0, softmax_jacobian(pi), q)
        assert np.linalg.norm(wrong - exact) > 0.1 * np.linalg.norm(exact)


def fit_weighted_least_squares(features, target, weight):
    """argmin_w sum_i weight_i (target_i - features_i . w)^2; returns the fitted values."""
    sqrt_w = np.sqrt(weight)
    coef, *_ = np.linalg.lstsq(features * sqrt_w[:, None], target * sqrt_w, rcond=None)
    return features @ coef


@pytest.mark.parametrize("seed", range(4))
def test_compatible_function_approximation(seed):
    p, r, d0, theta = random_mdp(seed + 10)
    with jax.enable_x64(True):
        p, r, d0, theta = map(jnp.asarray, (p, r, d0, theta))
        exact = np.asarray(jax.grad(start_value)(theta, p, r, d0))
        pi, v, q, p_pi = policy_evaluation(theta, p, r)
        d = discounted_state_weighting(p_pi, d0)
        # Compatible features phi(s, a) = grad_theta log pi(a|s), [S*A pairs, S*A params].
        phi = jax.jacobian(lambda th: jax.nn.log_softmax(th, axis=-1))(theta)
        onehot_s = jnp.eye(N_STATES)[:, None, :, None]
        analytic = onehot_s * (jnp.eye(N_ACTIONS)[None, :, None, :] - pi[None, None])
        np.testing.assert_allclose(phi, analytic, atol=1e-14)
        phi = np.asarray(phi).reshape(N_STATES * N_ACTIONS, -1)
        pi, q, d, v = map(np.asarray, (pi, q, d, v))
        dpi = np.asarray(softmax_jacobian(jnp.asarray(pi)))

    def gradient_with(f):  # sum_s d(s) sum_a grad pi(a|s) f(s, a)
        return np.einsum("s,sab,sa->sb", d, dpi, f.reshape(N_STATES, N_ACTIONS))

    weight = (d[:, None] * pi).reshape(-1)  # the on-policy weighting d(s) pi(a|s)
    # Theorem 2: f_w = w . phi fitted by weighted least squares gives the exact gradient.
    f_w = fit_weighted_least_squares(phi, q.reshape(-1), weight)
    np.testing.assert_allclose(gradient_with(f_w), exact, rtol=1e-9, atol=1e-11)
    # In the tabular case f_w is exactly the advantage Q - V (zero pi-mean in every state).
    np.testing.assert_allclose(f_w.reshape(N_STATES, N_ACTIONS), q - v[:, None], atol=1e-9)
    np.testing.assert_allclose(gradient_with(q.reshape(-1)), exact, rtol=1e-9, atol=1e-11)

    # The test can fail: (a) features that are not compatible, fitted the same way, and
    # (b) compatible features fitted with the wrong (uniform) weighting both miss.
    rng = np.random.default_rng(seed)
    other = rng.normal(size=(N_STATES * N_ACTIONS, 8))
    f_other = fit_weighted_least_squares(other, q.reshape(-1), weight)
    assert np.linalg.norm(gradient_with(f_other) - exact) > 0.05 * np.linalg.norm(exact)
    f_uniform = fit_weighted_least_squares(phi, q.reshape(-1), np.ones_like(weight))
    assert np.linalg.norm(gradient_with(f_uniform) - exact) > 0.05 * np.linalg.norm(exact)


# ----------------------------------------------------------------------------------------------
# Monte Carlo: REINFORCE over sampled episodes converges to the exact gradient.

HORIZON = 150  # gamma^H = 1.4e-7: the truncated tail is far below the Monte Carlo noise


def sample_episodes(key, theta, p, r, d0, n_episodes):
    """Roll out n_episodes of HORIZON steps; returns states, actions and rewards [N, H]."""

    def one_episode(key):
        k0, k_steps = jax.random.split(key)
        s0 = jax.random.choice(k0, N_STATES, p=d0)

        def step(s, k):
            ka, ks = jax.random.split(k)
            a = jax.random.categorical(ka, theta[s])
            s_next = jax.random.categorical(ks, jnp.log(p[s, a]))
            return s_next, (s, a, r[s, a])

        _, traj = jax.lax.scan(step, s0, jax.random.split(k_steps, HORIZON))
        return traj

    return jax.vmap(one_episode)(jax.random.split(key, n_episodes))


@jax.jit
def reinforce_gradients(theta, states, actions, rewards, baseline_values, w_t):
    """Per-episode estimates -H * grad reinforce_loss = sum_t w_t grad log pi(a_t|s_t) (G_t - b)."""

    def one(states, actions, rewards):
        discount = jnp.full(HORIZON, GAMMA, jnp.float32)
        zeros = jnp.zeros(HORIZON, jnp.float32)
        g_t = pg.n_step_advantages(rewards, discount, zeros, jnp.float32(0.0))  # MC returns
        b_t = baseline_values[states]
        loss = lambda th: pg.reinforce_loss(th[states], actions, g_t, b_t, w_t)
        return -HORIZON * jax.grad(loss)(theta)

    return jax.vmap(one)(states, actions, rewards)


def test_reinforce_monte_carlo_converges_to_exact_gradient():
    p, r, d0, theta = random_mdp(7)
    r = r + 3.0  # a reward offset makes the baseline matter
    with jax.enable_x64(True):
        p64, r64, d064, theta64 = map(jnp.asarray, (p, r, d0, theta))
        exact = np.asarray(jax.grad(start_value)(theta64, p64, r64, d064))
        v_pi = np.asarray(policy_evaluation(theta64, p64, r64)[1])
    p, r, d0, theta, v_pi = (jnp.asarray(x, jnp.float32) for x in (p, r, d0, theta, v_pi))
    discount_weights = GAMMA ** jnp.arange(HORIZON, dtype=jnp.float32)

    n_small, n_large = 1_000, 16_000
    states, actions, rewards = sample_episodes(jax.random.PRNGKey(0), theta, p, r, d0, n_large)

    def estimate(n, baseline, w_t):
        g = reinforce_gradients(theta, states, actions, rewards, baseline, w_t)
        g = np.asarray(g, np.float64).reshape(n_large, -1)[:n]
        mean, se = g.mean(0), g.std(0, ddof=1) / np.sqrt(n)
        return mean, se, (mean - exact.reshape(-1)) / se

    mean_s, se_s, z_s = estimate(n_small, v_pi, discount_weights)
    mean_l, se_l, z_l = estimate(n_large, v_pi, discount_weights)
    # Unbiased: every component within a few standard errors, at both sample sizes, and the
    # z-scores look standard normal on average.
    assert np.max(np.abs(z_s)) < 4.5 and np.max(np.abs(z_l)) < 4.5, (z_s, z_l)
    assert np.mean(z_s**2) < 3.0 and np.mean(z_l**2) < 3.0
    # Standard errors shrink like 1/sqrt(N) (16x the samples: 4x smaller), and so does the error.
    np.testing.assert_allclose(se_s / se_l, 4.0, rtol=0.25)
    err_s = np.linalg.norm(mean_s - exact.reshape(-1))
    err_l = np.linalg.norm(mean_l - exact.reshape(-1))
    assert err_l < err_s and err_l < 0.05 * np.linalg.norm(exact), (err_s, err_l)
    # Without a baseline the estimate is still unbiased, only noisier.
    _, se_nob, z_nob = estimate(n_large, jnp.zeros(N_STATES), discount_weights)
    assert np.max(np.abs(z_nob)) < 4.5 and np.all(se_nob > 2.0 * se_l)
    # Dropping the gamma^t weights (common practice) estimates a different vector: the test
    # can tell a biased estimator apart.
    _, _, z_biased = estimate(n_large, v_pi, jnp.ones(HORIZON))
    assert np.max(np.abs(z_biased)) > 10.0
