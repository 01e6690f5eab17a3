"""DDPM primitives against hand values and closed forms: schedules, q(x_t | x_0), the
posterior of eq. (7) by Gaussian conditioning, and the samplers driven by the exact
noise predictor of a Gaussian data distribution."""

import dataclasses
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusion.data import (
    ImageDataError,
    class_split,
    load_npz_images,
    to_model_range,
    to_uint8,
)
from diffusion.ddpm import (
    ancestral_sample,
    classifier_free_guidance,
    cosine_schedule,
    ddim_sample,
    ddim_timesteps,
    eps_from_v,
    linear_schedule,
    posterior_mean,
    predict_x0,
    q_sample,
    simple_loss,
    v_target,
)
from diffusion.metrics import (
    FeatureClassifier,
    classifier_features,
    frechet_distance,
    train_classifier,
)
from diffusion.unet import UNet, timestep_embedding


def test_linear_schedule_by_hand():
    s = linear_schedule(1000)
    b = np.asarray(s.betas)
    assert b[0] == pytest.approx(1e-4) and b[-1] == pytest.approx(0.02)
    assert b[1] - b[0] == pytest.approx((0.02 - 1e-4) / 999, rel=1e-4)
    ab = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000, dtype=np.float64))
    np.testing.assert_allclose(np.asarray(s.alpha_bars), ab, rtol=1e-4)
    assert float(s.alpha_bars[-1]) < 1e-4  # x_T is (almost) pure noise
    # eq. (7): beta-tilde_t = (1 - ab_{t-1}) / (1 - ab_t) beta_t, and beta-tilde_1 = 0
    bt = np.asarray(s.posterior_variance)
    assert bt[0] == 0.0
    np.testing.assert_allclose(bt[1:], (1 - ab[:-1]) / (1 - ab[1:]) * b[1:], rtol=1e-4)


def test_cosine_schedule_alpha_bar_follows_its_formula():
    T, s_ = 100, 0.008
    s = cosine_schedule(T, s_)
    f = lambda t: math.cos((t / T + s_) / (1 + s_) * math.pi / 2) ** 2  # noqa: E731
    for t in (1, 10, 50, 90):
        assert float(s.alpha_bars[t - 1]) == pytest.approx(f(t) / f(0), rel=1e-4)
    assert float(s.betas.max()) == pytest.approx(0.999)  # clipped at max_beta


def test_q_sample_and_predict_x0_invert_each_other():
    s = linear_schedule(1000)
    key = jax.random.key(0)
    x0 = jax.random.normal(key, (4, 3, 3, 1))
    eps = jax.random.normal(jax.random.key(1), x0.shape)
    t = jnp.array([1, 10, 500, 1000])
    xt = q_sample(s, x0, t, eps)
    ab = np.asarray(s.alpha_bars)[np.asarray(t) - 1]
    expected = np.sqrt(ab)[:, None, None, None] * x0 + np.sqrt(1 - ab)[:, None, None, None] * eps
    np.testing.assert_allclose(np.asarray(xt), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(predict_x0(s, xt, t, eps)), np.asarray(x0), atol=2e-3)
    with pytest.raises(ValueError, match="t_B"):
        q_sample(s, x0, jnp.array([1, 2]), eps)
    for bad in ([0, 10, 500, 1000], [1, 10, 500, 1001]):  # 0 would wrap to T, 1001 clip
        with pytest.raises(ValueError, match=r"t_B: timesteps must be in 1..T = 1000"):
            q_sample(s, x0, jnp.array(bad), eps)
    jitted = jax.jit(q_sample)(s, x0, t, eps)  # traced timesteps are not checked
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(xt), rtol=1e-6, atol=1e-6)


def test_posterior_mean_and_variance_equal_gaussian_conditioning():
    """q(x_{t-1} | x_t, x_0) from the joint Gaussian of (x_{t-1}, x_t) given x_0."""
    s = linear_schedule(1000)
    alphas = 1 - np.linspace(1e-4, 0.02, 1000)  # float64 reference
    for t in (2, 37, 999):
        ab_prev = float(np.prod(alphas[: t - 1]))
        a_t, ab_t = float(alphas[t - 1]), float(np.prod(alphas[:t]))
        # x_{t-1} = sqrt(ab_prev) x0 + sqrt(1 - ab_prev) e1
        # x_t = sqrt(a_t) x_{t-1} + sqrt(1 - a_t) e2
        var_prev, cov, var_t = 1 - ab_prev, math.sqrt(a_t) * (1 - ab_prev), 1 - ab_t
        x0, xt = 0.7, -0.3
        cond_mean = math.sqrt(ab_prev) * x0 + cov / var_t * (xt - math.sqrt(ab_t) * x0)
        cond_var = var_prev - cov**2 / var_t
        mean = posterior_mean(s, jnp.array([x0]), jnp.array([xt]), jnp.array([t]))
        assert float(mean[0]) == pytest.approx(cond_mean, rel=1e-4, abs=1e-6)
        assert float(s.posterior_variance[t - 1]) == pytest.approx(cond_var, rel=1e-3)


def gaussian_oracle(s, m, sd):
    """The exact E[eps | x_t] when the data are N(m, sd^2) per dimension."""

    def eps_fn(x, t):
        ab = s.alpha_bars[t - 1].reshape((-1,) + (1,) * (x.ndim - 1))
        return jnp.sqrt(1 - ab) * (x - jnp.sqrt(ab) * m) / (ab * sd**2 + 1 - ab)

    return eps_fn


@pytest.mark.parametrize("sigma", ["beta", "posterior"])
def test_ancestral_sampling_with_the_exact_noise_predictor_reproduces_the_data(sigma):
    s = linear_schedule(1000)
    m, sd = 1.5, 0.5
    x = np.asarray(
        ancestral_sample(gaussian_oracle(s, m, sd), s, (20000, 1), jax.random.key(2), sigma=sigma)
    )
    assert abs(x.mean() - m) < 0.02, x.mean()
    assert abs(x.std() / sd - 1) < 0.03, x.std()


def test_ddim_with_the_exact_noise_predictor_converges_to_the_data_as_steps_grow():
    """Deterministic DDIM shrinks the spread when its steps are coarse (a discretisation
    error of the underlying ODE); the error falls as the number of steps grows."""
    s = linear_schedule(1000)
    m, sd = 1.5, 0.5
    stds = []
    for steps in (10, 50, 250, 1000):
        x = np.asarray(
            ddim_sample(
                gaussian_oracle(s, m, sd), s, (20000, 1), jax.random.key(2), num_sample_steps=steps
            )
        )
        assert abs(x.mean() - m) < 0.02
        stds.append(x.std())
    assert np.all(np.diff(stds) > 0) and stds[0] < 0.9 * sd
    assert abs(stds[-1] / sd - 1) < 0.02, stds


def test_ddim_with_eta_one_and_every_step_is_ancestral_sampling_with_posterior_variance():
    s = linear_schedule(100, 1e-3, 0.2)
    eps_fn = gaussian_oracle(s, 0.3, 0.8)
    key = jax.random.key(3)
    a = ancestral_sample(eps_fn, s, (64, 2), key, sigma="posterior")
    b = ddim_sample(eps_fn, s, (64, 2), key, num_sample_steps=100, eta=1.0)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)


def test_ddim_is_deterministic_given_x_T_and_uses_strided_steps():
    taus = np.asarray(ddim_timesteps(1000, 50))
    assert len(taus) == 50 and taus[0] == 20 and taus[-1] == 1000
    assert np.all(np.diff(taus) == 20)
    calls = []

    def eps_fn(x, t):
        calls.append(1)
        return jnp.zeros_like(x)

    s = linear_schedule(1000)
    jax.make_jaxpr(lambda k: ddim_sample(eps_fn, s, (2, 1), k, 50))(jax.random.key(0))
    assert len(calls) == 1  # traced once inside one lax.scan of 50 steps
    with pytest.raises(ValueError, match="num_sample_steps"):
        ddim_timesteps(10, 11)
    with pytest.raises(ValueError, match="eta"):
        ddim_sample(eps_fn, s, (2, 1), jax.random.key(0), 50, eta=1.5)
    with pytest.raises(ValueError, match="spacing"):
        ddim_timesteps(1000, 50, "cubic")


@pytest.mark.parametrize("rederive_eps", [True, False])
def test_clipped_ddim_steps_against_numpy(rederive_eps):
    """Two DDIM steps (T = 10, taus 5 and 10, eta 0) with x0-hat clipped at 1, in float64:
    the direction term uses the eps of the clipped x0-hat, or the network's own eps."""
    s = linear_schedule(10, 1e-4, 0.2)
    key = jax.random.key(8)
    eps_fn = lambda x, t: 0.5 * x - 0.2  # noqa: E731  x0-hat leaves [-1, 1] at t = 10
    got = ddim_sample(eps_fn, s, (6, 2), key, 2, clip_x0=1.0, rederive_eps=rederive_eps)
    x = np.asarray(jax.random.normal(jax.random.split(key)[0], (6, 2)), np.float64)
    ab_all = np.concatenate([[1.0], np.cumprod(1 - np.linspace(1e-4, 0.2, 10))])
    clipped = 0
    for t, t_prev in ((10, 5), (5, 0)):
        ab, abp = ab_all[t], ab_all[t_prev]
        eps = 0.5 * x - 0.2
        x0 = (x - np.sqrt(1 - ab) * eps) / np.sqrt(ab)
        clipped += np.sum(np.abs(x0) > 1)
        x0 = np.clip(x0, -1, 1)
        if rederive_eps:
            eps = (x - np.sqrt(ab) * x0) / np.sqrt(1 - ab)
        x = np.sqrt(abp) * x0 + np.sqrt(1 - abp) * eps
    assert clipped > 0
    np.testing.assert_allclose(got, x, rtol=1e-4, atol=1e-5)


def test_quadratic_ddim_timesteps_are_strictly_increasing_from_one_to_T():
    """tau_i = 1 + round((T - 1)(i / S)^2), raised to stay strictly increasing."""
    taus = np.asarray(ddim_timesteps(1000, 50, "quadratic"))
    np.testing.assert_array_equal(taus[:6], [1, 3, 5, 7, 11, 15])  # 1 + round(999 i^2 / 2500)
    assert taus[-2:].tolist() == [960, 1000]
    for T in range(1, 121):
        for S in range(1, T + 1):
            taus = np.asarray(ddim_timesteps(T, S, "quadratic"))
            assert len(taus) == S and taus[0] >= 1 and taus[-1] == T, (T, S, taus)
            assert np.all(np.diff(taus) > 0), (T, S, taus)
    np.testing.assert_array_equal(ddim_timesteps(7, 7, "quadratic"), np.arange(1, 8))


def test_leading_ddim_timesteps_are_song_et_al_s_released_sub_sequence():
    """tau_i = 1 + floor((i - 1) T / S): range(0, T, T // S) shifted to 1-based where S
    divides T; it never reaches T unless S = T, where every spacing is 1..T."""
    taus = np.asarray(ddim_timesteps(1000, 50, "leading"))
    np.testing.assert_array_equal(taus, np.arange(0, 1000, 20) + 1)
    for T in range(1, 121):
        for S in range(1, T + 1):
            taus = np.asarray(ddim_timesteps(T, S, "leading"))
            assert len(taus) == S and taus[0] == 1 and np.all(np.diff(taus) > 0), (T, S, taus)
            assert taus[-1] < T or S == T, (T, S, taus)
    np.testing.assert_array_equal(ddim_timesteps(9, 9, "leading"), ddim_timesteps(9, 9))


def test_simple_loss_is_zero_for_the_exact_predictor_of_a_point_mass():
    """Data at a single point c: eps = (x_t - sqrt(ab) c) / sqrt(1 - ab) exactly."""
    s = linear_schedule(1000)
    c = 0.4

    def eps_fn(x, t):
        ab = s.alpha_bars[t - 1][:, None]
        return (x - jnp.sqrt(ab) * c) / jnp.sqrt(1 - ab)

    loss = simple_loss(eps_fn, s, jnp.full((256, 3), c), jax.random.key(0))
    assert float(loss) < 1e-6
    assert float(
        simple_loss(lambda x, t: jnp.zeros_like(x), s, jnp.full((4096, 3), c), jax.random.key(1))
    ) == pytest.approx(1.0, rel=0.05)


def test_min_snr_weighting_against_numpy():
    """Hang et al. 2023: error of example b weighted by min(SNR_t, gamma) / SNR_t, computed
    here in float64 from the betas; gamma = 5 leaves weight 1 only where SNR_t <= 5."""
    s = linear_schedule(1000)
    x0 = jax.random.normal(jax.random.key(3), (64, 2, 3))
    key = jax.random.key(4)
    eps_fn = lambda x, t: 0.5 * x  # noqa: E731
    got = float(simple_loss(eps_fn, s, x0, key, min_snr_gamma=5.0))
    k_t, k_eps = jax.random.split(key)  # the loss's own draws
    t = np.asarray(jax.random.randint(k_t, (64,), 1, 1001))
    eps = np.asarray(jax.random.normal(k_eps, x0.shape), np.float64)
    ab = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))[t - 1][:, None, None]
    x_t = np.sqrt(ab) * np.asarray(x0, np.float64) + np.sqrt(1 - ab) * eps
    snr = ab / (1 - ab)
    want = np.mean(np.minimum(snr, 5.0) / snr * (eps - 0.5 * x_t) ** 2)
    assert 0 < (snr[:, 0, 0] > 5).mean() < 1  # both branches of the min are exercised
    assert got == pytest.approx(want, rel=1e-5)
    uniform = float(simple_loss(eps_fn, s, x0, key))
    assert uniform == pytest.approx(np.mean((eps - 0.5 * x_t) ** 2), rel=1e-5) and got < uniform
    with pytest.raises(ValueError, match="min_snr_gamma"):
        simple_loss(eps_fn, s, x0, key, min_snr_gamma=0.0)


def test_v_target_and_eps_from_v_invert_each_other():
    """Salimans & Ho 2022: with x_t = a x0 + s eps and v = a eps - s x0 (a^2 + s^2 = 1),
    eps = s x_t + a v and x0 = a x_t - s v, at every t including T."""
    s = linear_schedule(1000)
    k0, k1 = jax.random.split(jax.random.key(5))
    x0 = jax.random.normal(k0, (5, 3, 2))
    eps = jax.random.normal(k1, x0.shape)
    t = jnp.array([1, 10, 500, 999, 1000])
    x_t = q_sample(s, x0, t, eps)
    v = v_target(s, x0, t, eps)
    ab = np.asarray(s.alpha_bars)[np.asarray(t) - 1][:, None, None]
    np.testing.assert_allclose(
        v, np.sqrt(ab) * np.asarray(eps) - np.sqrt(1 - ab) * np.asarray(x0), rtol=1e-6, atol=1e-6
    )
    np.testing.assert_allclose(eps_from_v(s, x_t, t, v), eps, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.sqrt(ab) * x_t - np.sqrt(1 - ab) * v, x0, atol=1e-5)
    # x0-hat from v keeps a network error e as large as (1 - ab)^0.5 e; from eps it is divided
    # by sqrt(ab): 158x at t = T
    e = 0.01
    from_v = predict_x0(s, x_t, t, eps_from_v(s, x_t, t, v + e)) - x0
    from_eps = predict_x0(s, x_t, t, eps + e) - x0
    np.testing.assert_allclose(np.abs(from_v[-1]), e * np.sqrt(1 - ab[-1, 0, 0]), rtol=1e-2)
    assert float(jnp.abs(from_eps[-1]).mean()) == pytest.approx(e / np.sqrt(ab[-1, 0, 0]), 1e-2)


@pytest.mark.parametrize("gamma", [None, 5.0])
def test_v_prediction_loss_is_the_mean_squared_v_error(gamma):
    """prediction="v": uniform weights give mean ||v - v_hat||^2; Min-SNR-gamma gives Hang et
    al.'s v weights min(SNR, gamma) / (SNR + 1); both computed here in float64."""
    s = linear_schedule(1000)
    x0 = jax.random.normal(jax.random.key(6), (64, 2, 3))
    key = jax.random.key(7)
    v_net = lambda x, t: 0.3 * x - 0.1  # noqa: E731

    def eps_fn(x, t):
        return eps_from_v(s, x, t, v_net(x, t))

    got = float(simple_loss(eps_fn, s, x0, key, min_snr_gamma=gamma, prediction="v"))
    k_t, k_eps = jax.random.split(key)
    t = np.asarray(jax.random.randint(k_t, (64,), 1, 1001))
    eps = np.asarray(jax.random.normal(k_eps, x0.shape), np.float64)
    ab = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))[t - 1][:, None, None]
    x0_64 = np.asarray(x0, np.float64)
    x_t = np.sqrt(ab) * x0_64 + np.sqrt(1 - ab) * eps
    v = np.sqrt(ab) * eps - np.sqrt(1 - ab) * x0_64
    snr = ab / (1 - ab)
    w = 1.0 if gamma is None else np.minimum(snr, gamma) / (snr + 1)
    assert got == pytest.approx(np.mean(w * (v - (0.3 * x_t - 0.1)) ** 2), rel=1e-4)
    with pytest.raises(ValueError, match="prediction"):
        simple_loss(eps_fn, s, x0, key, prediction="x0")


def test_timestep_embedding_by_hand():
    e = np.asarray(timestep_embedding(jnp.array([0, 3]), 4, max_period=100.0))
    np.testing.assert_allclose(e[0], [0, 0, 1, 1], atol=1e-7)
    np.testing.assert_allclose(
        e[1], [math.sin(3), math.sin(0.3), math.cos(3), math.cos(0.3)], rtol=1e-5
    )


def test_unet_keeps_the_image_shape_and_depends_on_t():
    net = UNet(base_channels=8)
    x = jax.random.normal(jax.random.key(0), (2, 28, 28, 1))
    params = jax.jit(net.init)(jax.random.key(1), x, jnp.array([1, 1]))
    n = sum(p.size for p in jax.tree.leaves(params))
    assert 1e4 < n < 1e6, n
    # the zero-initialised output conv makes the net output 0 at init; perturb it
    params = jax.tree.map(lambda p: p + 0.01 * jnp.ones_like(p), params)
    apply = jax.jit(net.apply)
    out1 = apply(params, x, jnp.array([1, 500]))
    out2 = apply(params, x, jnp.array([2, 500]))
    assert out1.shape == x.shape
    assert not np.allclose(np.asarray(out1[0]), np.asarray(out2[0]))
    np.testing.assert_allclose(np.asarray(out1[1]), np.asarray(out2[1]), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="divisible"):
        net.init(jax.random.key(1), jnp.zeros((1, 30, 30, 1)), jnp.array([1]))


def test_classifier_free_guidance_is_eq_6_in_one_batch():
    """eps~ = (1 + w) eps(x, t, y) - w eps(x, t, null) (Ho & Salimans 2022, eq. (6)), by hand
    for a made-up eps network whose output says which label it saw; w = 0 makes one pass."""
    calls = []

    def eps_fn_y(x, t, y):
        calls.append(x.shape[0])
        return x * (y[:, None] + 1.0) + t[:, None]

    x = jnp.array([[1.0, 2.0], [3.0, -1.0]])
    t, y = jnp.array([5, 7]), jnp.array([0, 2])
    null = 9  # eps(x, t, null) = 10 x + t; eps(x, t, y) = (y + 1) x + t
    guided = classifier_free_guidance(eps_fn_y, y, null, 1.5)(x, t)
    want = 2.5 * (np.array([[1.0], [3.0]]) * np.array(x) + [[5], [7]]) - 1.5 * (
        10 * np.array(x) + [[5], [7]]
    )
    np.testing.assert_allclose(guided, want, rtol=1e-6)
    assert calls == [4]  # the conditional and unconditional passes as one batch of 2B
    calls.clear()
    np.testing.assert_allclose(
        classifier_free_guidance(eps_fn_y, y, null, 0)(x, t), eps_fn_y(x, t, y), rtol=1e-6
    )
    assert calls == [2, 2]  # w = 0: no unconditional pass (and the reference call above)
    with pytest.raises(ValueError, match="guidance: must be >= 0"):
        classifier_free_guidance(eps_fn_y, y, null, -1.0)
    with pytest.raises(ValueError, match="y_B: must be"):
        classifier_free_guidance(eps_fn_y, y[:1], null, 1.0)(x, t)


def test_a_class_conditional_unet_embeds_its_labels():
    """num_classes = K adds a learned embedding of y in 0..K to the timestep embedding; y
    None is the null label K; an unconditional net has no embedding and refuses labels."""
    x = jax.random.normal(jax.random.key(0), (3, 8, 8, 1))
    t = jnp.array([4, 4, 4])
    net = UNet(base_channels=8, channel_mults=(1, 2), attention_resolutions=(4,), num_classes=2)
    params = net.init(jax.random.key(1), x, t, jnp.array([0, 1, 2]))
    assert params["params"]["Embed_0"]["embedding"].shape == (3, 32)  # K + 1 rows, 4 x width
    params = jax.tree.map(lambda p: p + 0.01 * jnp.ones_like(p), params)  # unzero the output
    same_x = jnp.broadcast_to(x[:1], x.shape)
    out = np.asarray(net.apply(params, same_x, t, jnp.array([0, 1, 2])))
    assert np.abs(out[0] - out[1]).max() > 1e-3 and np.abs(out[1] - out[2]).max() > 1e-3
    np.testing.assert_allclose(
        net.apply(params, same_x, t), net.apply(params, same_x, t, jnp.array([2] * 3))
    )
    plain = UNet(base_channels=8, channel_mults=(1, 2), attention_resolutions=(4,))
    plain_params = plain.init(jax.random.key(1), x, t)
    assert "Embed_0" not in plain_params["params"]
    with pytest.raises(ValueError, match="y_B: labels need num_classes > 0"):
        plain.apply(plain_params, x, t, jnp.array([0, 1, 0]))
    with pytest.raises(ValueError, match=r"y_B: .*shape \[B\] = \[3\]"):
        net.apply(params, x, t, jnp.array([0, 1]))


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    shift = np.array([1.0, -2.0, 0.5])
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-8)
    # diagonal covariances: d^2 = sum_i (sqrt(v_a,i) - sqrt(v_b,i))^2 (+ the mean term)
    b = a * np.array([2.0, 0.5, 1.0])
    va, vb = np.var(a, 0, ddof=1), np.var(b, 0, ddof=1)
    cov_term = np.sum(va + vb - 2 * np.sqrt(va * vb))
    mean_term = np.sum((a.mean(0) - b.mean(0)) ** 2)
    # the sample covariances are not exactly diagonal: compare with a loose tolerance
    assert frechet_distance(a, b) == pytest.approx(cov_term + mean_term, rel=0.02)
    with pytest.raises(ValueError, match="feats_a"):
        frechet_distance(a, a[:, :2])
    # a general pair against scipy's matrix square root of S_a S_b
    import scipy.linalg

    c = a @ rng.normal(size=(3, 3)) + 0.3
    s_a, s_c = np.cov(a, rowvar=False), np.cov(c, rowvar=False)
    reference = np.sum((a.mean(0) - c.mean(0)) ** 2) + np.trace(
        s_a + s_c - 2 * scipy.linalg.sqrtm(s_a @ s_c).real
    )
    assert frechet_distance(a, c) == pytest.approx(reference, rel=1e-9)
    # singular covariances (fewer rows than features, dead ReLU units): no complex round-off
    dead = np.maximum(rng.normal(size=(40, 128)), 0.0)
    dead[:, :30] = 0.0
    assert frechet_distance(dead, dead) == pytest.approx(0.0, abs=1e-4)
    assert frechet_distance(dead, dead + 0.5) == pytest.approx(128 * 0.25, rel=1e-6)
    with pytest.raises(ValueError, match="at least 2 rows"):
        frechet_distance(a[:1], a)
    b = a.copy()
    b[[3, 7], 1] = [np.nan, np.inf]
    with pytest.raises(ValueError, match="feats_b: 2 rows hold NaN or inf"):
        frechet_distance(a, b)


def test_images_scale_to_minus_one_one_and_split_per_class(tmp_path):
    x = np.arange(2 * 5 * 4, dtype=np.uint8).reshape(10, 2, 2) * 6
    y = np.repeat([0, 1], 5)
    xm = to_model_range(x)
    assert xm.shape == (10, 2, 2, 1) and xm.dtype == np.float32
    np.testing.assert_allclose(xm[0, 0, 0, 0], -1.0)
    np.testing.assert_array_equal(to_uint8(xm), x[..., None])
    xtr, ytr, xte, yte = class_split(xm, y, 3)
    assert list(ytr) == [0, 0, 0, 1, 1, 1] and list(yte) == [0, 0, 1, 1]
    np.testing.assert_array_equal(xte[2], xm[8])
    with pytest.raises(ImageDataError, match="train_per_class"):
        class_split(xm, y, 5)
    np.savez(tmp_path / "imgs.npz", x=x, y=y[:9])
    with pytest.raises(ImageDataError, match="labels"):
        load_npz_images(str(tmp_path / "imgs.npz"))
    with pytest.raises(ImageDataError, match="does not exist"):
        load_npz_images(str(tmp_path / "none.npz"))
    np.save(tmp_path / "lone.npy", x)
    with pytest.raises(ImageDataError, match="holds one array of shape"):
        load_npz_images(str(tmp_path / "lone.npy"))
    with pytest.raises(ImageDataError, match="0..max_value = 1.0, got -1.0..0.835"):
        to_model_range(xm[..., 0], max_value=1.0)  # already in [-1, 1]
    with pytest.raises(ImageDataError, match="0..max_value = 16.0, got 0.0..30.0"):
        to_model_range(np.array([[[0.0, 30.0]]]), max_value=16.0)
    with pytest.raises(ImageDataError, match="NaN or inf"):
        to_model_range(np.full((1, 2, 2), np.nan))
    with pytest.raises(ImageDataError, match="max_value: must be positive"):
        to_model_range(np.zeros((1, 2, 2)))
    with pytest.raises(ImageDataError, match="N >= 1"):
        to_model_range(np.zeros((0, 2, 2)))


def bars_dataset(path, per_class=40, seed=0):
    """8x8 images of a horizontal (class 0) or vertical (class 1) bar at a random place, with
    noise: a data set that needs nothing outside the repository."""
    rng = np.random.default_rng(seed)
    x = np.zeros((2 * per_class, 8, 8))
    y = np.repeat([0, 1], per_class)
    for i, c in enumerate(y):
        k = rng.integers(1, 7)
        if c == 0:
            x[i, k, :] = 1.0
        else:
            x[i, :, k] = 1.0
    x = np.clip(x + 0.1 * rng.random(x.shape), 0, 1)
    np.savez(path, x=(x * 255).astype(np.uint8), y=y)
    return path


def test_the_feature_classifier_learns_and_its_features_separate_classes(tmp_path):
    """The FD metric's classifier (diffusion/metrics.py) on the bars data: it learns them,
    `classifier_features` are its penultimate layer, and the Frechet distance in that
    space is small between the two splits of one distribution and large between classes."""
    x, y = load_npz_images(bars_dataset(tmp_path / "bars.npz", per_class=60))
    x_tr, y_tr, x_te, y_te = class_split(x, y, 40)
    clf = train_classifier(x_tr, y_tr, x_te, y_te, seed=0, epochs=20, batch_size=16)
    assert clf.test_accuracy == 1.0
    f_tr = classifier_features(clf.params, x_tr, batch_size=7)  # a ragged last batch
    f_te = classifier_features(clf.params, x_te)
    assert f_te.shape == (40, 128) and f_te.dtype == np.float64
    direct = FeatureClassifier(2).apply({"params": clf.params}, jnp.asarray(x_te))[1]
    np.testing.assert_allclose(f_te, np.asarray(direct), rtol=1e-5, atol=1e-6)
    same = frechet_distance(f_te, f_tr)
    across = frechet_distance(f_te[y_te == 0], f_tr[y_tr == 1])
    # trained: about 0.002 (the untrained network's features give 0.035)
    assert same < 0.01 * across, (same, across)


TINY = dict(
    train_per_class=32,
    num_steps=100,
    beta_T=0.2,
    base_channels=8,
    channel_mults=(1, 2),
    attention_resolutions=(4,),
    dropout=0.0,
    batch_size=32,
    learning_rate=2e-3,
    warmup_steps=10,
    eval_every=50,
    sample_count=0,
)


def test_ddpm_run_learns_resumes_exactly_and_samples_from_the_cli(tmp_path, capsys):
    from diffusion.train import DDPMConfig, run_ddpm
    from rlax_zoo import cli

    data = bars_dataset(str(tmp_path / "bars.npz"))
    config = DDPMConfig(**TINY, data=data, iterations=150)
    full = run_ddpm(config, run_dir=str(tmp_path / "full"), progress=False)
    losses = [r["loss"] for r in full.metrics]
    assert losses[-1] < 0.7 * losses[0], losses  # L_simple starts near 1 (predicting 0)
    assert (full.results["iterations"], full.results["out_of_time"]) == (150, False)
    # a time budget that the first chunk already spends: stops there, finished, not interrupted
    spent = run_ddpm(
        dataclasses.replace(config, time_budget_s=1e-9),
        run_dir=str(tmp_path / "budget"),
        progress=False,
    )
    assert not spent.interrupted
    assert (spent.results["iterations"], spent.results["out_of_time"]) == (50, True)
    part = run_ddpm(config, run_dir=str(tmp_path / "part"), progress=False, max_chunks=2)
    assert part.interrupted
    resumed = run_ddpm(resume=str(tmp_path / "part"), progress=False)
    for a, b in zip(jax.tree.leaves(full.state), jax.tree.leaves(resumed.state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    out = str(tmp_path / "grid.png")
    argv = [
        "sample",
        "--run",
        str(tmp_path / "full"),
        "--n",
        "9",
        "--sampler",
        "ddim",
        "--steps",
        "5",
        "--no-rederive-eps",
        "--out",
        out,
    ]
    assert cli.main(argv) == 0
    assert os.path.exists(out) and "wrote 9 samples" in capsys.readouterr().out
    out = str(tmp_path / "posterior.png")
    argv = ["sample", "--run", str(tmp_path / "full"), "--n", "2", "--sigma", "posterior"]
    assert cli.main([*argv, "--out", out]) == 0 and os.path.exists(out)
    assert "wrote 2 samples" in capsys.readouterr().out
    nested = str(tmp_path / "new" / "folder" / "grid.png")  # its folders are made
    assert cli.main([*argv, "--out", nested]) == 0 and os.path.exists(nested)
    capsys.readouterr()
    assert cli.main([*argv, "--out", os.path.join(out, "grid.png")]) == 2  # out is a file
    assert "out: cannot create folder" in capsys.readouterr().err
    ddim = ["sample", "--run", str(tmp_path / "full"), "--sampler", "ddim"]
    assert cli.main([*ddim, "--steps", "500"]) == 2
    assert "steps: must be in [1, 100], got 500" in capsys.readouterr().err
    assert cli.main([*ddim, "--eta", "2"]) == 2
    assert "sample_eta" in capsys.readouterr().err
    # a flag of the other sampler is refused, not ignored
    assert cli.main(["sample", "--run", str(tmp_path / "full"), "--steps", "5", "--eta", "0"]) == 2
    assert "--steps, --eta apply to --sampler ddim" in capsys.readouterr().err
    assert cli.main([*ddim, "--sigma", "posterior"]) == 2
    assert "--sigma applies to --sampler ddpm" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: invalid choice
        cli.main(["sample", "--run", str(tmp_path / "full"), "--spacing", "cubic"])
    assert "quadratic" in capsys.readouterr().err
    missing = ["--data", str(tmp_path / "none.npz"), "--run-dir", str(tmp_path / "failed")]
    assert cli.main(["train", "ddpm", *missing]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "failed").exists()  # a failed start leaves no run folder


def test_learning_rate_warms_up_then_stays_or_follows_a_cosine_to_zero():
    from diffusion.train import DDPMConfig, learning_rate_schedule
    from rlax_zoo.config import ConfigError

    kw = dict(learning_rate=1e-3, warmup_steps=100, iterations=1100)
    constant = learning_rate_schedule(DDPMConfig(**kw))
    cosine = learning_rate_schedule(DDPMConfig(**kw, lr_schedule="cosine"))
    for schedule in constant, cosine:  # the same linear warm-up
        np.testing.assert_allclose([schedule(0), schedule(50), schedule(100)], [0, 5e-4, 1e-3])
    np.testing.assert_allclose([constant(600), constant(1100), constant(5000)], 1e-3)
    # 1e-3 (1 + cos(pi (n - 100) / 1000)) / 2 at n = 350, 600, 850, 1100
    want = [1e-3 * (1 + np.cos(np.pi * f)) / 2 for f in (0.25, 0.5, 0.75, 1.0)]
    np.testing.assert_allclose([cosine(n) for n in (350, 600, 850, 1100)], want, atol=1e-9)
    assert want[1] == pytest.approx(5e-4) and want[3] == pytest.approx(0.0)
    for warmup, iterations in (100, 100), (0, 1):  # no steps left to decay over
        with pytest.raises(ConfigError, match="iterations"):
            DDPMConfig(warmup_steps=warmup, iterations=iterations, lr_schedule="cosine").check()


def test_ema_warm_up_forgets_the_initial_weights(tmp_path):
    """Step n averages with decay min(ema_decay, (1 + n) / (10 + n)): 0.1 at the first step."""
    from diffusion.data import load_npz_images
    from diffusion.train import DDPMConfig, make_ddpm_trainer

    x, _ = load_npz_images(bars_dataset(str(tmp_path / "bars.npz")))
    trainer = make_ddpm_trainer(DDPMConfig(**TINY, iterations=1), x)
    state = trainer.init(jax.random.PRNGKey(0))
    init = jax.tree.map(np.asarray, state.ema_params)
    new, _ = trainer.train_chunk(state, 1)
    for e0, p1, e1 in zip(
        jax.tree.leaves(init),
        jax.tree.leaves(new.params),
        jax.tree.leaves(new.ema_params),
        strict=True,
    ):
        np.testing.assert_allclose(np.asarray(e1), 0.1 * e0 + 0.9 * np.asarray(p1), atol=1e-6)


def test_a_v_prediction_run_learns_and_its_samplers_use_the_implied_eps(tmp_path):
    """`prediction="v"`: the run test's tiny problem is learned (the loss halves in 150
    steps), and the trainer's samplers use the eps that v implies: one DDIM step from T
    returns x0-hat = sqrt(ab_T) x_T - sqrt(1 - ab_T) v, clipped."""
    from diffusion.data import load_npz_images
    from diffusion.train import DDPMConfig, make_ddpm_trainer

    x, _ = load_npz_images(bars_dataset(str(tmp_path / "bars.npz")))
    trainer = make_ddpm_trainer(DDPMConfig(**TINY, iterations=1, prediction="v"), x)
    state = trainer.init(jax.random.PRNGKey(0))
    state, m = trainer.train_chunk(state, 150)
    losses = np.asarray(m["loss"])
    assert losses[-20:].mean() < 0.5 * losses[:20].mean(), losses
    params, key = state.params, jax.random.PRNGKey(2)
    one = trainer.sample(params, key, 3, "ddim", 1)  # a single step from T: x0-hat, clipped
    x_T = jax.random.normal(jax.random.split(key)[0], one.shape)
    t = jnp.full((3,), 100, jnp.int32)
    v = trainer.net.apply({"params": params}, x_T, t, train=False)
    ab = float(trainer.schedule.alpha_bars[-1])
    want = np.clip(np.sqrt(ab) * np.asarray(x_T) - np.sqrt(1 - ab) * np.asarray(v), -1, 1)
    np.testing.assert_allclose(one, want, atol=1e-4)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_clip_x0_bounds_the_samples_of_both_samplers(tmp_path, sampler):
    """The last step of both samplers returns x0-hat (DDIM: alpha-bar_0 = 1; ancestral: the
    posterior mean at t = 1 is x0-hat and z = 0), so clipping x0-hat at c bounds the samples
    by c; an untrained network's unclipped samples are not bounded by it."""
    from diffusion.data import load_npz_images
    from diffusion.train import DDPMConfig, make_ddpm_trainer

    x, _ = load_npz_images(bars_dataset(str(tmp_path / "bars.npz")))
    key = jax.random.PRNGKey(1)
    peaks = {}
    for clip in (0.0, 0.25):
        trainer = make_ddpm_trainer(DDPMConfig(**TINY, iterations=1, clip_x0=clip), x)
        params = trainer.init(jax.random.PRNGKey(0)).ema_params
        samples = trainer.sample(params, key, 4, sampler, 5)
        peaks[clip] = float(jnp.max(jnp.abs(samples)))
    assert peaks[0.25] <= 0.25 + 1e-6, peaks
    assert peaks[0.0] > 0.5, peaks


def test_sample_sigma_picks_the_ancestral_samplers_variance(tmp_path):
    """`sample_sigma="posterior"` makes the trainer's ancestral sampler Algorithm 2 with
    sigma_t^2 = beta-tilde_t, which is DDIM with eta = 1 at every one of the T steps (Song et
    al. 2021, eq. 16; clipping and all); the default, beta_t, is a different sampler."""
    from diffusion.data import load_npz_images
    from diffusion.train import DDPMConfig, make_ddpm_trainer
    from rlax_zoo.config import ConfigError, validate

    x, _ = load_npz_images(bars_dataset(str(tmp_path / "bars.npz")))
    key = jax.random.PRNGKey(4)
    out = {}
    for sigma in ("beta", "posterior"):
        config = DDPMConfig(**TINY, iterations=1, sample_sigma=sigma, sample_eta=1.0)
        trainer = make_ddpm_trainer(config, x)
        params = trainer.init(jax.random.PRNGKey(0)).ema_params
        out[sigma] = np.asarray(trainer.sample(params, key, 3, "ddpm"))
    # sample_sigma does not touch DDIM: one run with the config's eta = 1 serves both
    ddim_every_step = np.asarray(trainer.sample(params, key, 3, "ddim", config.num_steps))
    np.testing.assert_allclose(out["posterior"], ddim_every_step, atol=1e-4)
    assert np.abs(out["beta"] - out["posterior"]).max() > 0.05
    with pytest.raises(ConfigError, match="sample_sigma"):
        validate(DDPMConfig(sample_sigma="tilde"))


def test_label_dropout_drops_at_its_rate_and_never_drops_a_concept_label():
    """Ho & Salimans 2022, Algorithm 1: each label becomes the null label with chance p; the
    labels in `keep` (a concept's, kept out of the unconditional model) never do."""
    from diffusion.train import drop_labels

    y = jnp.tile(jnp.arange(4), 5000)
    out = np.asarray(drop_labels(jax.random.PRNGKey(0), y, 0.3, 9, keep=(2,)))
    y = np.asarray(y)
    assert set(np.unique(out)) == {0, 1, 2, 3, 9}
    np.testing.assert_array_equal(out[out != 9], y[out != 9])  # a label kept is unchanged
    assert np.all(out[y == 2] == 2)
    for label in 0, 1, 3:  # 5000 draws each: the rate within 4 standard errors of 0.3
        assert abs(np.mean(out[y == label] == 9) - 0.3) < 4 * np.sqrt(0.3 * 0.7 / 5000)
    assert np.all(np.asarray(drop_labels(jax.random.PRNGKey(1), jnp.asarray(y), 0.0, 9)) == y)


def test_a_trainer_with_concept_labels_trains_and_samples_its_concept(tmp_path):
    """concept_labels in the jitted step: a run whose class 1 never reaches the unconditional
    model trains (its loss falls) and samples class 1 with guidance."""
    from diffusion.data import load_npz_images
    from diffusion.train import DDPMConfig, make_ddpm_trainer

    x, y = load_npz_images(bars_dataset(str(tmp_path / "bars.npz")))
    config = DDPMConfig(**TINY, iterations=1, num_classes=2, concept_labels=(1,), guidance=1.0)
    trainer = make_ddpm_trainer(config, x, y)
    state, m = trainer.train_chunk(trainer.init(jax.random.PRNGKey(0)), 60)
    losses = np.asarray(m["loss"])
    assert losses[-10:].mean() < 0.7 * losses[:10].mean(), losses
    out = trainer.sample(state.ema_params, jax.random.PRNGKey(1), 2, "ddim", 5, jnp.array([1, 1]))
    assert out.shape == (2, 8, 8, 1) and np.all(np.isfinite(np.asarray(out)))


def horizontal_share(images):
    """The share of 8x8 bar images [n, 8, 8, 1] whose brightest row outshines their brightest
    column: 1 for horizontal bars (class 0 of `bars_dataset`), 0 for vertical ones."""
    x = np.asarray(images)[..., 0]
    return float(np.mean(x.mean(2).max(1) > x.mean(1).max(1)))


def test_a_class_conditional_run_draws_its_classes_and_guidance_sharpens_them(tmp_path, capsys):
    """num_classes = 2 on the bars (Ho & Salimans 2022): after 200 steps, the samples of
    class 0 are mostly horizontal bars and those of class 1 vertical; guidance w = 2 separates
    them further than the conditional model alone; the unconditional model (the null label)
    draws both. `rlax-zoo sample --label --guidance` samples a class, and labels, guidance or
    a config that cannot work are refused by name."""
    from diffusion.data import load_npz_images
    from diffusion.train import DDPMConfig, make_ddpm_trainer, run_ddpm, sample_from_run
    from rlax_zoo import cli
    from rlax_zoo.config import ConfigError

    data = bars_dataset(str(tmp_path / "bars.npz"))
    config = DDPMConfig(
        **{**TINY, "sample_count": 4},
        data=data,
        iterations=200,
        num_classes=2,
        label_dropout=0.2,
        guidance=2.0,
    )
    run = run_ddpm(config, run_dir=str(tmp_path / "run"), progress=False)
    assert os.path.exists(run.results["samples_png"])
    share = {}
    for w in 0.0, 2.0:
        for label in 0, 1:
            _, x = sample_from_run(run.run_dir, 64, "ddim", 20, label=label, guidance=w)
            share[w, label] = horizontal_share(x)
    assert share[2.0, 0] > 0.9 and share[2.0, 1] < 0.1, share
    assert share[2.0, 0] - share[2.0, 1] > share[0.0, 0] - share[0.0, 1] + 0.1, share
    trainer = make_ddpm_trainer(config, *load_npz_images(data))
    params = run.state.ema_params
    unconditional = horizontal_share(trainer.sample(params, jax.random.PRNGKey(3), 64, "ddim", 20))
    assert 0.25 < unconditional < 0.75, unconditional

    out = str(tmp_path / "zeros.png")
    argv = ["sample", "--run", run.run_dir, "--n", "4", "--sampler", "ddim", "--steps", "5"]
    assert cli.main([*argv, "--label", "0", "--guidance", "1", "--out", out]) == 0
    assert os.path.exists(out) and "wrote 4 samples" in capsys.readouterr().out
    assert cli.main([*argv, "--label", "2"]) == 2
    assert "label: labels must be in 0..1 (num_classes 2), got 2..2" in capsys.readouterr().err
    assert cli.main([*argv, "--guidance", "-1"]) == 2
    assert "guidance" in capsys.readouterr().err
    x, y = load_npz_images(data)
    with pytest.raises(ConfigError, match="num_classes: 2 needs the training labels"):
        make_ddpm_trainer(config, x)
    with pytest.raises(ConfigError, match="y_train: must be 80 integer labels"):
        make_ddpm_trainer(config, x, y[:5])
    with pytest.raises(ConfigError, match="y_train: labels need num_classes > 0"):
        make_ddpm_trainer(DDPMConfig(**TINY), x, y)
    with pytest.raises(ConfigError, match="labels: an unconditional model"):
        make_ddpm_trainer(DDPMConfig(**TINY), x).sample(
            params, jax.random.PRNGKey(0), 2, "ddim", 5, jnp.array([0, 1])
        )
    with pytest.raises(ConfigError, match="label_dropout: guidance > 0 needs"):
        dataclasses.replace(config, label_dropout=0.0).check()
    with pytest.raises(
        ConfigError, match=r"concept_labels: must be labels in 0..num_classes - 1 \(1\)"
    ):
        dataclasses.replace(config, concept_labels=(2,)).check()
    with pytest.raises(ConfigError, match="concept_labels: need a class-conditional model"):
        DDPMConfig(concept_labels=(0,)).check()
