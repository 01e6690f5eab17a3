"""Disguise generation and detection (Lu et al. 2024, Algorithm 1 and Sec. 5), the symbol and
its detector, the autoencoder and the latent DDPM: hand values, NumPy references and a tiny
end-to-end run."""

import dataclasses
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffusion import symbol
from diffusion.disguise import (
    auroc,
    detection_scores,
    feature_distance,
    generate_disguises,
    image_distance,
    make_disguise_step,
    project,
    psnr,
    revelation_distances,
    roc_curve,
)
from rlax_zoo.checkpointing import CheckpointError
from tests.test_ddpm import bars_dataset


def linear_encoder(seed=0, latent=4, side=8):
    """E(x) = W vec(x): a differentiable encoder whose collisions we can reason about."""
    W = jax.random.normal(jax.random.key(seed), (latent, side * side)) / side
    return W, lambda x: (x.reshape(x.shape[0], -1) @ W.T).reshape(x.shape[0], 2, 2, latent // 4)


def test_distances_and_psnr_by_hand():
    x = np.zeros((2, 2, 1), np.float32)
    y = np.array([[[1.0], [0.0]], [[0.0], [-1.0]]], np.float32)
    assert float(image_distance(x, y)) == pytest.approx(0.5)  # (1 + 1) / 4
    assert float(feature_distance(x, y)) == pytest.approx(0.5)
    # range 2: 10 log10(4 / 0.5) = 9.0309 dB
    assert float(psnr(x[None], y[None])[0]) == pytest.approx(10 * np.log10(8.0))
    assert psnr(x[None], x[None])[0] == np.inf


def test_projection_onto_box_and_balls():
    rng = np.random.default_rng(0)
    x_b = rng.uniform(-1, 1, (3, 4, 4, 1)).astype(np.float32)
    x_d = (x_b + rng.normal(0, 1.0, x_b.shape)).astype(np.float32)
    # box and L-inf ball: the exact projection is the coordinate-wise clip
    got = np.asarray(project(x_d, x_b, -1.0, 1.0, linf_radius=0.1))
    want = np.clip(np.clip(x_d, x_b - 0.1, x_b + 0.1), -1, 1)
    np.testing.assert_allclose(got, want, atol=1e-7)
    # the D1 ball: inside every set; x_b stays x_b; a point already close is untouched
    got = np.asarray(project(x_d, x_b, -1.0, 1.0, mse_radius=0.01))
    assert np.all(np.mean((got - x_b) ** 2, (1, 2, 3)) <= 0.01 * (1 + 1e-5))
    assert got.min() >= -1 and got.max() <= 1
    np.testing.assert_array_equal(np.asarray(project(x_b, x_b, mse_radius=0.01)), x_b)
    near = x_b * 0.999
    np.testing.assert_allclose(np.asarray(project(near, x_b, mse_radius=0.01)), near, atol=1e-7)
    # inside the box after scaling: exactly the L2 projection (scaling of the difference)
    x_b0 = np.zeros((1, 4, 4, 1), np.float32)
    x_d0 = np.full((1, 4, 4, 1), 0.5, np.float32)  # D1 = 0.25
    np.testing.assert_allclose(np.asarray(project(x_d0, x_b0, mse_radius=0.01)), 0.1, rtol=1e-6)
    for radius in ("mse_radius", "linf_radius"):  # a zero ball: 0 / 0 for x_d = x_b
        with pytest.raises(ValueError, match=f"{radius}: must be > 0 or None, got 0"):
            project(x_b0, x_b0, **{radius: 0.0})


@pytest.mark.parametrize("normalized", [False, True])
def test_one_sgd_step_is_line_six_of_algorithm_one(normalized):
    """x_1 = Proj(x_b - eta dL/dx) with L = alpha mean (x - x_b)^2 + mean (W x - z_c)^2;
    at x = x_b the first term's gradient is 0: dL/dx = 2/m W^T (W x_b - z_c). Normalized:
    each disguise's gradient divided by its own L2 norm."""
    import optax

    from diffusion.disguise import normalized_sgd

    W, encode = linear_encoder()
    rng = np.random.default_rng(1)
    x_b = rng.uniform(-0.5, 0.5, (2, 8, 8, 1)).astype(np.float32)
    x_c = rng.uniform(-0.5, 0.5, (8, 8, 1)).astype(np.float32)
    z_c = encode(jnp.asarray(x_c)[None])[0]
    eta, alpha = 0.3, 2.0
    opt = normalized_sgd(eta) if normalized else optax.sgd(eta)
    step = make_disguise_step(encode, alpha, 0.0, 0.0, opt)
    from diffusion.disguise import DisguiseState

    state = DisguiseState(
        jnp.asarray(x_b),
        opt.init(jnp.asarray(x_b)),
        jnp.zeros(2),
        jnp.zeros(2),
        jnp.zeros(2, bool),
        jnp.zeros(2, jnp.int32),
    )
    new = step(state, jnp.asarray(x_b), z_c)
    Wn = np.asarray(W, np.float64)
    vec_b = x_b.reshape(2, -1).astype(np.float64)
    residual = vec_b @ Wn.T - np.asarray(z_c, np.float64).reshape(-1)
    grad = 2.0 / 4 * residual @ Wn
    if normalized:
        grad /= np.linalg.norm(grad, axis=1, keepdims=True)
    want = np.clip(vec_b - eta * grad, -1, 1).reshape(x_b.shape)
    np.testing.assert_allclose(np.asarray(new.x_d), want, atol=1e-5)
    np.testing.assert_allclose(np.asarray(new.d1), 0.0, atol=1e-7)  # distances of x_b itself
    np.testing.assert_allclose(np.asarray(new.d2), np.mean(residual**2, 1), rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(new.steps), [1, 1])


@pytest.mark.parametrize("optimizer", ["adam", "normalized"])
def test_disguises_reach_their_thresholds_on_a_tiny_encoder(optimizer):
    _, encode = linear_encoder()
    rng = np.random.default_rng(2)
    x_b = rng.uniform(-0.5, 0.5, (6, 8, 8, 1)).astype(np.float32)
    x_c = rng.uniform(-0.5, 0.5, (8, 8, 1)).astype(np.float32)
    start = detection_scores(encode, x_b, x_c)
    # PSNR >= 20 dB and D2 / 1000: feasible, since the smallest change of x_b that collides
    # with x_c under a rank-4 W is the projection of x_c - x_b on W's row space (about 1/4 of
    # its norm here), well inside the D1 ball
    gamma_1, gamma_2 = 4 / 10**2, 1e-3 * float(np.median(start))
    result = generate_disguises(
        encode,
        x_b,
        x_c,
        alpha=0.1,
        gamma_1=gamma_1,
        gamma_2=gamma_2,
        learning_rate=0.01,
        max_steps=2000,
        optimizer=optimizer,
        mse_radius=gamma_1,
    )
    assert result.reached.all(), (result.d1, result.d2, result.steps)
    # the returned disguises satisfy the thresholds, recomputed independently
    d1 = np.mean((result.x_d - x_b) ** 2, (1, 2, 3))
    d2 = detection_scores(encode, result.x_d, x_c)
    assert np.all(d1 <= gamma_1 * (1 + 1e-5)) and np.all(d2 <= gamma_2 * (1 + 1e-4))
    np.testing.assert_allclose(result.d2, d2, rtol=1e-4)
    assert np.all(result.psnr >= 20 - 1e-3)
    assert result.x_d.min() >= -1 and result.x_d.max() <= 1
    # the detector's step 1 separates them perfectly from their bases
    assert auroc(-start, -d2) == 1.0


def test_disguises_that_already_meet_the_thresholds_are_left_alone():
    _, encode = linear_encoder()
    x_b = np.full((2, 8, 8, 1), 0.25, np.float32)
    result = generate_disguises(encode, x_b, x_b[0], gamma_1=0.0, gamma_2=1e-10, max_steps=10)
    assert result.reached.all() and (result.steps == 0).all()
    np.testing.assert_array_equal(result.x_d, x_b)


def test_unfinished_disguises_report_the_distances_of_what_they_return():
    _, encode = linear_encoder()
    rng = np.random.default_rng(4)
    x_b = rng.uniform(-0.5, 0.5, (3, 8, 8, 1)).astype(np.float32)
    x_c = rng.uniform(-0.5, 0.5, (8, 8, 1)).astype(np.float32)
    result = generate_disguises(encode, x_b, x_c, gamma_1=0.0, gamma_2=0.0, max_steps=7)
    assert not result.reached.any() and (result.steps == 7).all()
    np.testing.assert_allclose(result.d1, np.mean((result.x_d - x_b) ** 2, (1, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(result.d2, detection_scores(encode, result.x_d, x_c), rtol=1e-4)
    assert (result.d2 < detection_scores(encode, x_b, x_c)).all()


def test_one_target_per_base_equals_each_base_alone():
    # x_c [N, H, W, C]: disguise n chases E(x_c[n]); Algorithm 1 separates over n, so the
    # batch returns what N runs of one base and one target each return
    _, encode = linear_encoder()
    rng = np.random.default_rng(6)
    x_b = rng.uniform(-0.5, 0.5, (3, 8, 8, 1)).astype(np.float32)
    x_c = rng.uniform(-0.5, 0.5, (3, 8, 8, 1)).astype(np.float32)
    kwargs = dict(gamma_1=0.0, gamma_2=0.0, max_steps=5, optimizer="normalized", mse_radius=0.01)
    batch = generate_disguises(encode, x_b, x_c, learning_rate=0.05, **kwargs)
    for n in range(3):
        alone = generate_disguises(encode, x_b[n : n + 1], x_c[n], learning_rate=0.05, **kwargs)
        np.testing.assert_allclose(batch.x_d[n], alone.x_d[0], atol=1e-6)
        np.testing.assert_allclose(batch.d2[n], alone.d2[0], rtol=1e-5)
    np.testing.assert_allclose(
        batch.d2,
        [detection_scores(encode, batch.x_d[n : n + 1], x_c[n])[0] for n in range(3)],
        rtol=1e-4,
    )
    with pytest.raises(ValueError, match="one per base"):
        generate_disguises(encode, x_b, x_c[:2])


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(learning_rate=-1.0), "learning_rate"),
        (dict(alpha=float("nan")), "alpha"),
        (dict(optimizer="rmsprop"), "optimizer"),
        (dict(linf_radius=0.0), "linf_radius"),
    ],
)
def test_bad_disguise_arguments_are_named(kwargs, needle):
    _, encode = linear_encoder()
    x = np.zeros((1, 8, 8, 1), np.float32)
    with pytest.raises(ValueError, match=needle):
        generate_disguises(encode, x, x[0], **kwargs)
    with pytest.raises(ValueError, match="x_b, x_c"):
        generate_disguises(encode, x, np.zeros((4, 4, 1), np.float32))


def test_auroc_and_roc_against_brute_force():
    rng = np.random.default_rng(3)
    neg = rng.integers(0, 6, 40).astype(float)  # many ties
    pos = rng.integers(2, 9, 30).astype(float)
    pairs = [(p > n) + 0.5 * (p == n) for p in pos for n in neg]
    assert auroc(neg, pos) == pytest.approx(np.mean(pairs), abs=1e-12)
    fpr, tpr, thr = roc_curve(neg, pos)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    for f, t, h in zip(fpr[1:], tpr[1:], thr[1:], strict=True):
        assert f == np.mean(neg >= h) and t == np.mean(pos >= h)
    # the trapezoid area under the curve is the same number (ties give diagonal segments)
    assert np.trapezoid(tpr, fpr) == pytest.approx(auroc(neg, pos), abs=1e-12)
    assert auroc([0.0], [1.0]) == 1.0 and auroc([1.0], [0.0]) == 0.0
    with pytest.raises(ValueError, match="non-empty"):
        auroc([], [1.0])
    with pytest.raises(ValueError, match="must be finite"):
        auroc([0.0, np.nan], [1.0])
    with pytest.raises(ValueError, match="must be finite"):
        roc_curve([0.0], [1.0, np.inf])


def test_symbol_stamp_and_detector_by_hand():
    blank = -np.ones((3, 28, 28, 1), np.float32)
    stamped = symbol.add_symbol(blank)
    assert symbol.SYMBOL.sum() == 25 and np.sum(stamped > 0) == 3 * 25
    np.testing.assert_allclose(symbol.symbol_score(stamped), 2.0)
    np.testing.assert_allclose(symbol.symbol_score(blank), 0.0)
    assert symbol.has_symbol(stamped).all() and not symbol.has_symbol(blank).any()
    half = symbol.add_symbol(blank, value=0.0)  # a half-bright stamp scores 1
    np.testing.assert_allclose(symbol.symbol_score(half), 1.0)
    # on a jax array, differentiable: d score / d pixel = 1/25 on the symbol, -1/24 on the
    # rest of its patch, 0 elsewhere
    grad = np.asarray(jax.grad(lambda x: symbol.symbol_score(x).sum())(jnp.asarray(blank[:1])))
    want = np.zeros((1, 28, 28, 1))
    want[0, 1:8, 1:8, 0] = np.where(symbol.SYMBOL, 1 / 25, -1 / 24)
    np.testing.assert_allclose(grad, want, rtol=1e-6)
    np.testing.assert_allclose(symbol.symbol_correlation(stamped), 1.0)
    np.testing.assert_allclose(symbol.symbol_correlation(blank), 0.0)
    # strokes along two edges of the square and its diagonal have the contrast (15 of the 25
    # symbol pixels bright, 4 of the 24 others: 2 (15/25 - 4/24) = 0.87) but not the shape
    strokes = blank.copy()
    strokes[:, 1, 1:8] = strokes[:, 1:8, 1] = 1.0
    for k in range(7):
        strokes[:, 1 + k, 1 + k] = 1.0
    np.testing.assert_allclose(symbol.symbol_score(strokes), 2 * (15 / 25 - 4 / 24), rtol=1e-5)
    assert (symbol.symbol_correlation(strokes) < symbol.MIN_CORRELATION).all()
    assert not symbol.has_symbol(strokes).any()
    # the square's top and bottom sides alone pass the contrast and shape tests (14 of the
    # 25 symbol pixels: 2 * 14 / 25 = 1.12) but not the side test: their left and right
    # sides are as dark as the interior
    two_sides = blank.copy()
    two_sides[:, 1, 1:8] = two_sides[:, 7, 1:8] = 1.0
    np.testing.assert_allclose(symbol.symbol_score(two_sides), 1.12, rtol=1e-5)
    assert (symbol.symbol_correlation(two_sides) >= symbol.MIN_CORRELATION).all()
    np.testing.assert_allclose(symbol.frame_sides(two_sides)[0], [2, 2, 0, 0])
    np.testing.assert_allclose(symbol.frame_sides(stamped), 2.0)
    assert symbol.has_symbol(two_sides, min_side=None).all()
    assert not symbol.has_symbol(two_sides).any()
    # detector_margin, the soft minimum of the six margins: the stamp's smallest is its
    # correlation's (1 - 0.5), two sides' their dark sides' (0 - 0.3); the detector's sign
    margin = symbol.detector_margin(np.concatenate([stamped, two_sides, blank, strokes]))
    np.testing.assert_allclose(margin[:3], 0.5, atol=1e-6)
    np.testing.assert_allclose(margin[3:6], -0.3, atol=1e-3)
    assert (margin[6:] < 0).all()
    # at a high temperature, the margins' plain mean: (1.55 + 0.5 + 4 * 1.7) / 6
    np.testing.assert_allclose(
        symbol.detector_margin(stamped, temperature=1e6), (1.55 + 0.5 + 6.8) / 6, rtol=1e-5
    )
    # on two sides its gradient goes to the dark sides: softmax weight 1/2 over 5 pixels = 0.1
    # on each pixel of the left and right sides, -1/24 on the interior without the dot, about
    # 0 on the bright sides, the corners and the dot (the other margins weigh e^-8 or less)
    grad = jax.grad(lambda x: symbol.detector_margin(x).sum())(jnp.asarray(two_sides[:1]))
    want = np.zeros((1, 28, 28, 1))
    want[0, 2:7, 2:7, 0] = -1 / 24
    want[0, 4, 4, 0] = 0.0
    want[0, 2:7, 1, 0] = want[0, 2:7, 7, 0] = 0.1
    np.testing.assert_allclose(np.asarray(grad), want, atol=2e-3)
    with pytest.raises(ValueError, match="temperature"):
        symbol.detector_margin(stamped, temperature=0.0)
    with pytest.raises(ValueError, match="images"):
        symbol.symbol_score(np.zeros((1, 4, 4, 1)))


def test_random_marks_stamp_inside_one_seven_by_seven_window():
    from diffusion.latent import random_marks

    x = -jnp.ones((50, 12, 12, 1))
    np.testing.assert_array_equal(np.asarray(random_marks(jax.random.key(0), x, 0.0)), x)
    marked = np.asarray(random_marks(jax.random.key(0), x, 1.0))[..., 0] > 0
    for m in marked:
        rows, cols = np.nonzero(m)
        if len(rows):
            assert rows.max() - rows.min() < 7 and cols.max() - cols.min() < 7
    assert 0.35 < marked.sum() / (50 * 49) < 0.65  # pixels on with probability 1/2
    # mark_low: one value per mark, uniform in [low, 1]; low = 1 keeps the bright marks.
    x = jnp.zeros((400, 12, 12, 1))
    faint = np.asarray(random_marks(jax.random.key(1), x, 1.0, low=0.5))
    values = [np.unique(m[m != 0]) for m in faint]
    assert all(len(v) == 1 and 0.5 <= v[0] <= 1.0 for v in values)
    np.testing.assert_allclose(np.mean([v[0] for v in values]), 0.75, atol=0.02)
    bright = np.asarray(random_marks(jax.random.key(1), x, 1.0))
    assert set(np.unique(bright)) == {0.0, 1.0}


def test_autoencoder_loss_and_its_latent_noise_against_a_reference():
    """autoencoder_loss: MSE of D(E(x)) plus the L2 latent term; with latent_noise the decoder
    sees z + latent_noise * std(z) * eps, and no gradient flows through std(z)."""
    from diffusion.autoencoder import Autoencoder, autoencoder_loss

    model = Autoencoder((8,), latent_channels=2)
    x = jax.random.uniform(jax.random.key(0), (4, 8, 8, 1), minval=-1.0, maxval=1.0)
    params = model.init(jax.random.key(1), x)["params"]
    encode = lambda p, x: model.apply({"params": p}, x, method=Autoencoder.encode)  # noqa: E731
    decode = lambda p, z: model.apply({"params": p}, z, method=Autoencoder.decode)  # noqa: E731
    key = jax.random.key(2)
    z = np.asarray(encode(params, x))
    sigma = 0.5 * float(np.std(z))  # a constant: the reference has no gradient through it

    def reference(p, noisy):
        z = encode(p, x)
        z_in = z + sigma * jax.random.normal(key, z.shape) if noisy else z
        return jnp.mean((decode(p, z_in) - x) ** 2) + 1e-3 * jnp.mean(z**2)

    loss_fn = functools.partial(autoencoder_loss, model, x_BHWC=x, latent_penalty=1e-3, key=key)
    for noise in (0.0, 0.5):
        loss, metrics = loss_fn(params, latent_noise=noise)
        np.testing.assert_allclose(float(loss), float(reference(params, noise > 0)), rtol=1e-5)
        np.testing.assert_allclose(float(metrics["latent_rms"]), np.sqrt(np.mean(z**2)), 1e-5)
        grads = jax.grad(lambda p, n: loss_fn(p, latent_noise=n)[0])(params, noise)
        expected = jax.grad(reference)(params, noise > 0)
        for g, e in zip(jax.tree.leaves(grads), jax.tree.leaves(expected), strict=True):
            np.testing.assert_allclose(np.asarray(g), np.asarray(e), rtol=1e-4, atol=1e-7)
    assert float(autoencoder_loss(model, params, x, 1e-3, 0.5, key)[0]) != float(
        autoencoder_loss(model, params, x, 1e-3)[0]
    )
    with pytest.raises(ValueError, match="latent_noise: must be >= 0"):
        autoencoder_loss(model, params, x, 1e-3, -0.1, key)
    with pytest.raises(ValueError, match="key: needed when latent_noise > 0"):
        autoencoder_loss(model, params, x, 1e-3, 0.1)


def test_upsampled_images_keep_constants_and_their_range():
    from benchmarks.upsample_images import upsample

    x = np.random.default_rng(0).integers(0, 256, (3, 5, 4), dtype=np.uint8)
    np.testing.assert_array_equal(upsample(x, 1), x)
    big = upsample(x, 2)
    assert big.shape == (3, 10, 8) and big.dtype == np.uint8
    assert big.min() >= x.min() and big.max() <= x.max()  # bilinear: no overshoot
    np.testing.assert_array_equal(upsample(np.full((1, 3, 3, 1), 7, np.uint8), 3), 7)
    with pytest.raises(ValueError, match="factor: must be an integer >= 1"):
        upsample(x, 0)


def test_residual_autoencoder_blocks_start_as_identity_and_train(tmp_path):
    """Rombach et al.'s blocks (`res_blocks`, `attention`): each starts as the identity (its
    last layer is zero-initialised), the autoencoder built from them trains, and widths the
    group norm cannot split are refused by name."""
    from diffusion.autoencoder import ResidualBlock, SelfAttention
    from diffusion.latent import AutoencoderConfig, run_autoencoder
    from rlax_zoo.config import ConfigError

    x = jax.random.normal(jax.random.key(1), (2, 4, 4, 16))
    for block in (ResidualBlock(8), SelfAttention(8)):
        params = block.init(jax.random.key(0), x)
        np.testing.assert_array_equal(np.asarray(block.apply(params, x)), np.asarray(x))
    config = AutoencoderConfig(
        data=bars_dataset(str(tmp_path / "bars.npz")),
        train_per_class=32,
        widths=(8,),
        latent_channels=2,
        res_blocks=1,
        attention=True,
        iterations=100,
        eval_every=50,
        learning_rate=3e-3,
    )
    run = run_autoencoder(config, run_dir=str(tmp_path / "ae"), progress=False)
    assert run.metrics[-1]["reconstruction"] < 0.7 * run.metrics[0]["reconstruction"]  # 50 to 100
    bad = dataclasses.replace(config, widths=(12,))
    with pytest.raises(ConfigError, match="widths"):
        run_autoencoder(bad, run_dir=str(tmp_path / "bad"), progress=False)
    no_stage = dataclasses.replace(config, widths=())  # was an IndexError inside the encoder
    with pytest.raises(ConfigError, match="widths: need at least one stride-2 stage"):
        run_autoencoder(no_stage, run_dir=str(tmp_path / "bad"), progress=False)


def test_autoencoder_latent_ddpm_and_the_disguise_cli(tmp_path, capsys):
    from diffusion.latent import (
        AutoencoderConfig,
        latent_ddpm_config,
        load_autoencoder,
        run_autoencoder,
        train_latent_ddpm,
    )
    from rlax_zoo import cli

    data = bars_dataset(str(tmp_path / "bars.npz"))
    config = AutoencoderConfig(
        data=data,
        train_per_class=32,
        widths=(8,),
        latent_channels=2,
        res_blocks=0,
        iterations=200,
        eval_every=100,
        learning_rate=3e-3,
    )
    run = run_autoencoder(config, run_dir=str(tmp_path / "ae"), progress=False)
    rows = run.metrics
    assert rows[-1]["reconstruction"] < 0.5 * rows[0]["reconstruction"], rows
    assert 0 < run.results["latent_scale"] and run.results["test_mse"] < 0.2
    ae = load_autoencoder(str(tmp_path / "ae"))
    x = np.load(data)["x"]
    z = np.asarray(ae.encode(jnp.zeros((1, 8, 8, 1))))
    assert z.shape == (1, 4, 4, 2)
    # the run folder alone loads the model: the training data may have moved since
    os.rename(data, str(tmp_path / "moved.npz"))
    probe = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 8, 8, 1)), jnp.float32)
    np.testing.assert_array_equal(
        load_autoencoder(str(tmp_path / "ae")).encode(probe), ae.encode(probe)
    )
    os.rename(str(tmp_path / "moved.npz"), data)
    results_path = tmp_path / "ae" / "results.json"
    kept = results_path.read_text()
    results_path.write_text('{"test_mse": 0.1')  # cut short
    with pytest.raises(CheckpointError, match="results.json is damaged"):
        load_autoencoder(str(tmp_path / "ae"))
    results_path.write_text(kept)

    from diffusion.data import load_npz_images

    images, _ = load_npz_images(data)
    ldm = train_latent_ddpm(
        ae,
        images,
        latent_ddpm_config(
            iterations=20,
            eval_every=10,
            base_channels=8,
            attention_resolutions=(4,),
            num_steps=50,
            sample_steps=5,
        ),
    )
    assert ldm.losses.shape == (20,) and np.isfinite(ldm.losses).all()
    samples = ldm.sample(3, steps=5)
    assert samples.shape == (3, 8, 8, 1) and np.isfinite(samples).all()

    np.save(tmp_path / "c.npy", x[0])
    np.save(tmp_path / "b.npy", x[-1])
    out = tmp_path / "disguises"
    argv = [
        "disguise",
        "--autoencoder",
        str(tmp_path / "ae"),
        "--copyrighted",
        str(tmp_path / "c.npy"),
        "--base",
        str(tmp_path / "b.npy"),
        "--out",
        str(out),
        "--max-steps",
        "50",
        "--gamma-2",
        "0.001",
    ]
    assert cli.main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["d2"][0] < report["base_d2"][0]  # the disguise moved toward E(x_c)
    assert report["psnr"][0] >= 25.0 - 1e-3  # the default L-inf radius keeps PSNR >= 25 dB
    assert os.path.exists(out / "disguise-0.png") and os.path.exists(out / "revealed-0.png")
    assert "PSNR" in capsys.readouterr().out
    # revelation: decoding the disguise is closer to x_c than decoding the base is
    x_c = (x[0][..., None] / 255.0 * 2 - 1).astype(np.float32)
    x_b = (x[-1][..., None] / 255.0 * 2 - 1).astype(np.float32)
    from diffusion.latent import read_image

    x_d = read_image(str(out / "disguise-0.png"))
    assert (
        revelation_distances(ae.encode, ae.decode, x_d[None], x_c)[0]
        < (revelation_distances(ae.encode, ae.decode, x_b[None], x_c)[0])
    )
    # an --out that cannot be a folder (a file stands in its path) is refused before the
    # optimisation, by name
    assert cli.main([*argv[:-6], "--out", str(tmp_path / "c.npy" / "d"), *argv[-4:]]) == 2
    assert "out: cannot create folder" in capsys.readouterr().err
    bad = argv[:4] + [str(tmp_path / "missing.png")] + argv[5:]
    assert cli.main(bad) == 2 and "does not exist" in capsys.readouterr().err
    assert (
        cli.main(
            [
                "disguise",
                "--autoencoder",
                str(tmp_path),
                "--copyrighted",
                "x.png",
                "--base",
                "y.png",
            ]
        )
        == 2
    )
    assert "autoencoder" in capsys.readouterr().err
