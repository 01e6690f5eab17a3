"""DreamerV3's primitives (rlax_zoo.world_model) against hand-computed values and NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlax_zoo import world_model as wm


def test_symlog_symexp_values_and_inverse():
    x = np.array([-100.0, -np.e + 1, -0.5, 0.0, 0.5, np.e - 1, 1e4], np.float32)
    expected = np.sign(x) * np.log(np.abs(x) + 1)
    np.testing.assert_allclose(wm.symlog(x), expected, rtol=1e-6)
    np.testing.assert_allclose(wm.symlog(np.float32(np.e - 1)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(wm.symexp(wm.symlog(x)), x, rtol=1e-5)
    # symlog has slope 1 at 0 (it is the identity near 0, unlike log).
    for v in (-3.0, 0.0, 2.0):
        np.testing.assert_allclose(jax.grad(wm.symlog)(v), 1 / (1 + abs(v)), rtol=1e-6)
        np.testing.assert_allclose(jax.grad(wm.symexp)(v), np.exp(abs(v)), rtol=1e-6)


def test_symlog_bins_shape_and_errors():
    bins = wm.symlog_bins()
    assert bins.shape == (255,) and bins[0] == -20 and bins[-1] == 20 and bins[127] == 0
    with pytest.raises(ValueError, match="num_bins"):
        wm.symlog_bins(1)
    with pytest.raises(ValueError, match="low < high"):
        wm.symlog_bins(5, 1.0, 1.0)


def test_twohot_hand_computed():
    bins = np.array([0.0, 1.0, 2.0, 4.0], np.float32)
    np.testing.assert_allclose(wm.twohot(1.25, bins), [0, 0.75, 0.25, 0])
    np.testing.assert_allclose(wm.twohot(3.0, bins), [0, 0, 0.5, 0.5])
    np.testing.assert_allclose(wm.twohot(1.0, bins), [0, 1, 0, 0])  # on a bin: one-hot
    np.testing.assert_allclose(wm.twohot(4.0, bins), [0, 0, 0, 1])  # the last bin
    np.testing.assert_allclose(wm.twohot(9.0, bins), [0, 0, 0, 1])  # clipped above
    np.testing.assert_allclose(wm.twohot(-3.0, bins), [1, 0, 0, 0])  # clipped below


def test_twohot_expectation_recovers_value():
    bins = wm.symlog_bins(41, -5.0, 5.0)
    y = np.random.default_rng(0).uniform(-5, 5, size=(7, 3)).astype(np.float32)
    w = np.asarray(wm.twohot(y, bins))
    assert w.shape == (7, 3, 41)
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(w @ bins, y, atol=1e-5)
    assert ((w > 0).sum(-1) <= 2).all()


def test_twohot_loss_and_mean_against_numpy():
    rng = np.random.default_rng(1)
    bins = wm.symlog_bins(21, -3.0, 3.0)
    logits = rng.normal(size=(5, 21)).astype(np.float32)
    target = rng.uniform(-10, 10, size=5).astype(np.float32)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    y = np.clip(np.sign(target) * np.log1p(np.abs(target)), -3, 3)
    expected = []
    for i in range(5):
        k = min(np.searchsorted(bins, y[i], side="right") - 1, 19)
        w_hi = (y[i] - bins[k]) / (bins[k + 1] - bins[k])
        expected.append(-((1 - w_hi) * log_p[i, k] + w_hi * log_p[i, k + 1]))
    np.testing.assert_allclose(wm.twohot_loss(logits, target, bins), expected, rtol=1e-5)
    probs = np.exp(log_p)
    mean = probs @ bins
    np.testing.assert_allclose(
        wm.twohot_mean(logits, bins), np.sign(mean) * np.expm1(np.abs(mean)), rtol=1e-5
    )
    # Zero logits over symmetric bins predict exactly 0 (the zero-initialised heads).
    np.testing.assert_allclose(wm.twohot_mean(np.zeros(255), wm.symlog_bins()), 0.0, atol=1e-6)
    # The target carries no gradient.
    g = jax.grad(lambda t: wm.twohot_loss(logits, t, bins).sum())(target)
    np.testing.assert_array_equal(g, 0.0)


def test_unimix_logits():
    logits = jnp.array([[20.0, -20.0, 0.0, 0.0]])
    log_p = wm.unimix_logits(logits, 0.01)
    p = np.exp(np.asarray(log_p))
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-6)
    soft = np.asarray(jax.nn.softmax(logits))
    np.testing.assert_allclose(p, 0.99 * soft + 0.0025, rtol=1e-5)
    assert p.min() >= 0.0025 - 1e-7
    np.testing.assert_allclose(np.exp(wm.unimix_logits(logits, 1.0)), 0.25, rtol=1e-6)
    with pytest.raises(ValueError, match="mix"):
        wm.unimix_logits(logits, 1.5)


def test_straight_through_sample():
    logits = jnp.log(jnp.array([[0.2, 0.5, 0.3], [0.9, 0.05, 0.05]]))
    keys = jax.random.split(jax.random.PRNGKey(0), 4000)
    samples = jax.vmap(lambda k: wm.straight_through_sample(k, logits))(keys)
    s = np.asarray(samples)
    np.testing.assert_allclose(s.sum(-1), 1.0, atol=1e-6)
    assert set(np.unique(np.round(s, 5))) <= {0.0, 1.0}  # forward: exact one-hots
    np.testing.assert_allclose(s.mean(0), np.exp(np.asarray(logits)), atol=0.03)
    # Backward: the gradient of the softmax probabilities (onehot + p - sg(p)).
    c = jnp.array([1.0, -2.0, 0.5])
    g = jax.grad(lambda lg: jnp.sum(wm.straight_through_sample(keys[0], lg) * c))(logits)
    g_ref = jax.grad(lambda lg: jnp.sum(jax.nn.softmax(lg) * c))(logits)
    np.testing.assert_allclose(g, g_ref, rtol=1e-6)


def _np_kl(p_logits, q_logits):
    lp = p_logits - np.log(np.exp(p_logits).sum(-1, keepdims=True))
    lq = q_logits - np.log(np.exp(q_logits).sum(-1, keepdims=True))
    return (np.exp(lp) * (lp - lq)).sum((-2, -1))


def test_kl_balancing_values_and_gradients():
    rng = np.random.default_rng(2)
    post = rng.normal(size=(6, 4, 5)).astype(np.float32) * 2
    prior = rng.normal(size=(6, 4, 5)).astype(np.float32) * 2
    kl = _np_kl(post, prior)
    np.testing.assert_allclose(wm.categorical_kl(post, prior), kl, rtol=1e-5)
    dyn, rep = wm.kl_balancing_losses(post, prior, free_nats=1.0)
    np.testing.assert_allclose(dyn, np.maximum(kl, 1.0), rtol=1e-5)
    np.testing.assert_allclose(rep, dyn)
    # L_dyn trains only the prior, L_rep only the posterior.
    d_post, d_prior = jax.grad(lambda a, b: wm.kl_balancing_losses(a, b)[0].sum(), (0, 1))(
        post, prior
    )
    np.testing.assert_array_equal(d_post, 0.0)
    assert np.abs(d_prior).sum() > 0
    r_post, r_prior = jax.grad(lambda a, b: wm.kl_balancing_losses(a, b)[1].sum(), (0, 1))(
        post, prior
    )
    np.testing.assert_array_equal(r_prior, 0.0)
    assert np.abs(r_post).sum() > 0
    # Free bits: a KL below free_nats gives no gradient at all.
    near = post + 0.01 * rng.normal(size=post.shape).astype(np.float32)
    assert (_np_kl(post, near) < 1.0).all()
    g = jax.grad(lambda a: sum(x.sum() for x in wm.kl_balancing_losses(a, near)))(post)
    np.testing.assert_array_equal(g, 0.0)
    with pytest.raises(ValueError, match="free_nats"):
        wm.kl_balancing_losses(post, prior, -1.0)


def test_return_range_update_against_numpy():
    rng = np.random.default_rng(3)
    state = wm.init_return_range()
    low = high = 0.0
    for scale_of_returns in (1.0, 50.0, 50.0, 0.1):
        r = rng.normal(size=(15, 40)).astype(np.float32) * scale_of_returns
        state, scale = wm.return_range_update(state, r, decay=0.9)
        low = 0.9 * low + 0.1 * np.percentile(r, 5)
        high = 0.9 * high + 0.1 * np.percentile(r, 95)
        np.testing.assert_allclose([state.low, state.high], [low, high], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(scale, max(1.0, high - low), rtol=1e-4)
    with pytest.raises(ValueError, match="decay"):
        wm.return_range_update(state, r, decay=1.0)


def test_dreamer_actor_loss_against_numpy():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(6, 3)).astype(np.float32)
    log_p = np.asarray(jax.nn.log_softmax(logits))
    a = rng.integers(0, 3, size=6)
    returns = rng.normal(size=6).astype(np.float32) * 5
    values = rng.normal(size=6).astype(np.float32)
    scale = np.float32(2.5)
    loss = wm.dreamer_actor_loss(log_p, a, returns, values, scale, 0.1)
    entropy = -(np.exp(log_p) * log_p).sum(-1)
    expected = -(returns - values) / scale * log_p[np.arange(6), a] - 0.1 * entropy
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    # No gradient reaches the returns or values (stop-gradient on the advantage).
    g_r, g_v = jax.grad(
        lambda r, v: wm.dreamer_actor_loss(log_p, a, r, v, scale).sum(), (0, 1)
    )(returns, values)
    np.testing.assert_array_equal(g_r, 0.0)
    np.testing.assert_array_equal(g_v, 0.0)
