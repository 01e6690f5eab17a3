"""PR-SSM: the sampled ELBO against a closed form, the transition noise options, the data
loader and ARX baseline, learning a small linear system, and the run folder."""

import dataclasses
import json
import math
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlax_zoo import cli
from rlax_zoo.checkpointing import CheckpointError
from rlax_zoo.config import ConfigError, validate
from sequence.prssm import (
    PRSSMConfig,
    elbo_terms,
    free_simulation,
    init_params,
    lagged_inputs,
    make_prssm_trainer,
    sample_trajectories,
    transition_gps,
    transition_moments,
    unused_ladder,
)
from sequence.runs import evaluate_prssm, run_prssm
from sequence.sysid import (
    DataError,
    fit_arx,
    gaussian_metrics,
    load_sysid_csv,
    mixture_moments,
    select_arx,
    simulate_arx,
    write_sysid_csv,
)
from tests.test_gp import np_se

SMALL = dict(
    latent_dim=2,
    num_inducing=8,
    num_samples=8,
    batch_size=4,
    seq_len=40,
    recognition_window=4,
    recognition_hidden=8,
    eval_samples=200,
)


def random_walk_params(config, Du=1, Dy=1, process_std=0.1, obs_std=0.5):
    """GP signal variance ~0 and the identity mean function: x_t = x_{t-1} + noise."""
    p = init_params(jax.random.key(0), config, Du, Dy)
    return p._replace(
        log_kernel_std=jnp.full_like(p.log_kernel_std, math.log(1e-4)),
        log_process_std=jnp.full_like(p.log_process_std, math.log(process_std)),
        log_obs_std=jnp.full_like(p.log_obs_std, math.log(obs_std)),
    )


def test_elbo_data_term_matches_closed_form_for_a_random_walk():
    """x_1 ~ N(0, s1^2) (the recognition model at init), x_t = x_{t-1} + N(0, sx^2): then
    E[log N(y_t | x_t, sy^2)] = -0.5 (log 2 pi sy^2 + (y_t^2 + s1^2 + (t-1) sx^2) / sy^2)."""
    config = PRSSMConfig(**{**SMALL, "num_samples": 20000, "seq_len": 6})
    params = random_walk_params(config)
    rng = np.random.default_rng(0)
    B, H = 3, 6
    y = rng.normal(size=(B, H, 1)).astype(np.float32)
    u = rng.normal(size=(B, H, 1)).astype(np.float32)
    scale = 2.5
    terms = elbo_terms(params, jnp.asarray(y), jnp.asarray(u), jax.random.key(1), config, scale)
    s1 = math.log1p(math.exp(-2.0)) + 1e-4  # softplus(0 - 2) + 1e-4 at init
    sx2, sy2 = 0.1**2, 0.5**2
    v = s1**2 + np.arange(H) * sx2
    expected = -0.5 * (math.log(2 * math.pi * sy2) + (y[..., 0] ** 2 + v) / sy2)
    np.testing.assert_allclose(float(terms["loglik"]), scale * expected.sum(), rtol=2e-3)
    kl_x1 = 0.5 * (s1**2 - 1 - 2 * math.log(s1)) * config.latent_dim * B
    np.testing.assert_allclose(float(terms["kl_x1"]), scale * kl_x1, rtol=1e-4)
    np.testing.assert_allclose(
        float(terms["elbo"]), float(terms["loglik"] - terms["kl_z"] - terms["kl_x1"]), rtol=1e-6
    )
    # the authors' sum over samples is exactly N times the paper's mean
    summed = elbo_terms(
        params,
        jnp.asarray(y),
        jnp.asarray(u),
        jax.random.key(1),
        dataclasses.replace(config, sample_reduction="sum"),
        scale,
    )
    np.testing.assert_allclose(
        float(summed["loglik"]), config.num_samples * float(terms["loglik"]), rtol=1e-5
    )


def test_mismatched_shapes_name_the_arguments():
    config = PRSSMConfig(**SMALL)  # recognition_window 4
    params = init_params(jax.random.key(0), config, 1, 1)
    y, u = jnp.zeros((2, 6, 1)), jnp.zeros((2, 6, 1))
    with pytest.raises(ValueError, match="y_BHY, u_BHU: must be"):
        elbo_terms(params, y, u[:, :5], jax.random.key(1), config, 1.0)
    with pytest.raises(ValueError, match="H >= recognition_window"):
        elbo_terms(params, y[:, :3], u[:, :3], jax.random.key(1), config, 1.0)
    key = jax.random.key(1)
    with pytest.raises(ValueError, match=r"y_window_WY: must be \[recognition_window = 4, Dy\]"):
        free_simulation(params, jnp.zeros((10, 1)), jnp.zeros((3, 1)), key, config, 5)
    with pytest.raises(ValueError, match=r"u_TU \[T >= 4, Du\]"):
        free_simulation(params, jnp.zeros((3, 1)), jnp.zeros((4, 1)), key, config, 5)
    mean, var = free_simulation(params, jnp.zeros((10, 1)), jnp.zeros((4, 1)), key, config, 5)
    assert mean.shape == var.shape == (10, 1)


@pytest.mark.parametrize(
    "noise_scale,shared,inducing",
    [
        ("std", False, "marginal"),
        ("variance", False, "marginal"),
        ("std", True, "marginal"),
        ("std", False, "trajectory"),
    ],
)
def test_transition_noise_options(noise_scale, shared, inducing):
    """One step from a fixed state: Var(x_2) = var_f + sx^2 (paper), or its square (the
    authors' code scales eps by the variance); shared noise makes the dimensions move
    together. With one z ~ q(z) per trajectory, one step's moments are the marginal's too."""
    config = PRSSMConfig(
        **{**SMALL, "noise_scale": noise_scale, "shared_noise": shared},
        inducing_samples=inducing,
    )
    params = init_params(jax.random.key(3), config, 1, 1)
    params = params._replace(
        log_process_std=jnp.log(jnp.array([0.3, 0.6])),
        q_mu=jax.random.normal(jax.random.key(5), params.q_mu.shape),
        q_log_diag=jnp.full_like(params.q_log_diag, math.log(0.4)),
    )
    S = 40000
    x1 = jnp.tile(jnp.array([[0.2, -0.4]]), (S, 1))
    u = jnp.array([[0.5], [0.0]])
    xs = sample_trajectories(params, x1, u, jax.random.key(4), config)
    mean, var_f = transition_moments(transition_gps(params), x1[:1], u[:1])
    total = np.asarray(var_f[0]) + np.array([0.09, 0.36])
    expected_var = total if noise_scale == "std" else total**2
    x2 = np.asarray(xs[1])
    np.testing.assert_allclose(x2.mean(0), np.asarray(mean[0]), atol=0.02)
    np.testing.assert_allclose(x2.var(0), expected_var, rtol=0.04)
    corr = np.corrcoef(x2.T)[0, 1]
    assert (abs(corr - 1) < 1e-3) if shared else (abs(corr) < 0.03)


def test_trajectory_inducing_samples_follow_one_function_per_trajectory():
    """inducing_samples="trajectory" against a NumPy loop: each trajectory s draws z_{d,s} =
    q_mu_d + L_d eps_{d,s} once and every step uses p(f_t | x_{t-1}, z_s) of eq. (8) with
    that same z (the draws are those of sample_trajectories' documented keys)."""
    config = PRSSMConfig(**SMALL, inducing_samples="trajectory")
    params = init_params(jax.random.key(3), config, 1, 1)
    X, P = params.q_mu.shape
    rng = np.random.default_rng(0)
    params = params._replace(
        q_mu=jnp.asarray(rng.normal(size=(X, P)), jnp.float32),
        q_sqrt_offdiag=jnp.asarray(0.2 * rng.normal(size=(X, P, P)), jnp.float32),
        q_log_diag=jnp.full((X, P), math.log(0.5)),
        log_kernel_std=jnp.full((X,), math.log(0.8)),
    )
    S, H = 5, 6
    x1 = jnp.asarray(rng.normal(size=(S, X)), jnp.float32)
    u = jnp.asarray(rng.normal(size=(H, 1)), jnp.float32)
    key = jax.random.key(7)
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        xs = np.asarray(sample_trajectories(p64, x1.astype(jnp.float64), u, key, config))
        eps_z = np.asarray(jax.random.normal(jax.random.fold_in(key, 1), (X, S, P)))
        noise = [np.asarray(jax.random.normal(k, (S, X))) for k in jax.random.split(key, H - 1)]
    zeta = np.asarray(p64.zeta)
    L = np.tril(np.asarray(p64.q_sqrt_offdiag), -1) + np.exp(np.asarray(p64.q_log_diag))[
        ..., None
    ] * np.eye(P)
    var = np.exp(2 * np.asarray(p64.log_kernel_std))
    ls = np.exp(np.asarray(p64.log_lengthscales))
    sx2 = np.exp(2 * np.asarray(p64.log_process_std))
    x = np.asarray(x1, np.float64)
    for t in range(H - 1):
        xu = np.concatenate([x, np.repeat(np.asarray(u[t : t + 1], np.float64), S, 0)], 1)
        nxt = np.empty_like(x)
        for d in range(X):
            K = np_se(zeta[d], zeta[d], var[d], ls[d]) + 1e-5 * var[d] * np.eye(P)
            k = np_se(zeta[d], xu, var[d], ls[d])  # [P, S]
            z = np.asarray(p64.q_mu[d])[None] + eps_z[d] @ L[d].T  # [S, P], fixed along t
            mean = x[:, d] + np.einsum("ps,ps->s", k, np.linalg.solve(K, z.T))
            v = var[d] - np.einsum("ps,ps->s", k, np.linalg.solve(K, k))
            nxt[:, d] = mean + np.sqrt(np.maximum(v, 0) + sx2[d]) * noise[t][:, d]
        x = nxt
        np.testing.assert_allclose(xs[t + 1], x, rtol=1e-6, atol=1e-8)


def linear_system(T=400, seed=0, widen=None):
    """y_t = 0.8 y_{t-1} + 0.5 u_{t-1} with piecewise-constant random inputs; widen=(start,
    stop, factor) multiplies u[start:stop] by factor (inputs that leave the range before)."""
    rng = np.random.default_rng(seed)
    u = np.repeat(rng.uniform(-1, 1, size=T // 10), 10)[:, None]
    if widen is not None:
        u[widen[0] : widen[1]] *= widen[2]
    y = np.zeros((T, 1))
    for t in range(1, T):
        y[t] = 0.8 * y[t - 1] + 0.5 * u[t - 1]
    return u, y + 0.01 * rng.normal(size=y.shape)


def test_input_lags_are_a_tapped_delay_line_fed_to_the_transitions():
    u = jnp.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])
    expected = [[1, 10, 1, 10, 1, 10], [2, 20, 1, 10, 1, 10], [3, 30, 2, 20, 1, 10]]
    np.testing.assert_array_equal(lagged_inputs(u, 2), expected)
    assert lagged_inputs(u, 0) is u
    # input_lags=2 trains and predicts as the lag-free model on the hand-widened record
    u, y = linear_system(120)
    config = PRSSMConfig(**SMALL, input_lags=2)
    lagged = make_prssm_trainer(config, u[:80], y[:80])
    plain = make_prssm_trainer(
        dataclasses.replace(config, input_lags=0), np.asarray(lagged_inputs(u[:80], 2)), y[:80]
    )
    key = jax.random.key(3)
    (s1, m1), (s2, m2) = (t.train_chunk(t.init(key), 5) for t in (lagged, plain))
    assert s1.params.zeta.shape[-1] == config.latent_dim + 3
    np.testing.assert_allclose(m1["loss"], m2["loss"], rtol=1e-6)
    window = jnp.asarray(y[80:84], jnp.float32)
    u_test = jnp.asarray(u[80:], jnp.float32)
    p1 = lagged.predict(s1.params, u_test, window, key)
    p2 = plain.predict(s2.params, lagged_inputs(u_test, 2), window, key)
    for a, b in zip(p1, p2, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_lengthscale_ladder_starts_seed_k_at_init_times_ladder_to_the_k(tmp_path):
    u, y = linear_system(120)
    config = PRSSMConfig(**SMALL, init_lengthscale=2.0, lengthscale_ladder=2.0, num_seeds=4)
    trainer = make_prssm_trainer(config, u[:80], y[:80])
    keys = jax.random.split(jax.random.key(0), 4)
    ls = np.exp(np.asarray(jax.vmap(trainer.init)(keys, jnp.arange(4)).params.log_lengthscales))
    assert ls.shape == (4, config.latent_dim, config.latent_dim + 1)
    np.testing.assert_allclose(ls, np.broadcast_to([2, 4, 8, 16], (3, 2, 4)).T, rtol=1e-6)
    # the rest of each seed's start is what its key gives, ladder or not
    flat = make_prssm_trainer(dataclasses.replace(config, lengthscale_ladder=1.0), u[:80], y[:80])
    for member in range(4):
        a, b = trainer.init(keys[member], member), flat.init(keys[member])
        np.testing.assert_allclose(np.exp(b.params.log_lengthscales), 2.0, rtol=1e-6)
        np.testing.assert_array_equal(a.params.zeta, b.params.zeta)
    # a run of 2 seeds trains seed 1 from the second rung (one Adam step of lr 0.01 moves a
    # log length-scale by about 0.01 at most)
    path = str(tmp_path / "sys.csv")
    write_sysid_csv(path, u, y)
    cfg = dataclasses.replace(config, data=path, num_seeds=2, lengthscale_ladder=3.0)
    cfg = dataclasses.replace(cfg, iterations=1, eval_every=1, eval_samples=20)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = run_prssm(cfg, run_dir=str(tmp_path / "run"), progress=False, plot=False)
    assert not [w for w in caught if "lengthscale" in str(w.message)]
    ls = np.exp(np.asarray(run.state.params.log_lengthscales))
    np.testing.assert_allclose(ls[0], 2.0, rtol=0.015)
    np.testing.assert_allclose(ls[1], 6.0, rtol=0.015)
    # with 3 rungs the ladder starts again at the fourth seed
    rungs = make_prssm_trainer(
        dataclasses.replace(config, num_seeds=5, lengthscale_rungs=3), u[:80], y[:80]
    )
    keys = jax.random.split(jax.random.key(0), 5)
    ls = np.exp(np.asarray(jax.vmap(rungs.init)(keys, jnp.arange(5)).params.log_lengthscales))
    np.testing.assert_allclose(ls[:, 0, 0], [2, 4, 8, 2, 4], rtol=1e-6)
    # a ladder that changes no seed's start is named, and so is a run that asks for one
    assert unused_ladder(config) is None
    assert unused_ladder(dataclasses.replace(config, num_seeds=5, lengthscale_rungs=3)) is None
    assert unused_ladder(dataclasses.replace(config, lengthscale_ladder=1.0)) is None
    assert "num_seeds=1" in unused_ladder(dataclasses.replace(config, num_seeds=1))
    assert "lengthscale_rungs=1" in unused_ladder(dataclasses.replace(config, lengthscale_rungs=1))
    no_ladder = dataclasses.replace(config, lengthscale_ladder=1.0, lengthscale_rungs=2)
    assert "lengthscale_rungs=2 has no effect" in unused_ladder(no_ladder)
    with pytest.warns(UserWarning, match="lengthscale_ladder=3.0 has no effect with num_seeds=1"):
        run_prssm(
            dataclasses.replace(cfg, num_seeds=1),
            run_dir=str(tmp_path / "one"),
            progress=False,
            plot=False,
        )
    with pytest.raises(ConfigError, match="lengthscale_ladder"):
        validate(dataclasses.replace(config, lengthscale_ladder=0.0))
    with pytest.raises(ConfigError, match="lengthscale_rungs"):
        validate(dataclasses.replace(config, lengthscale_rungs=-1))


def test_clip_inputs_holds_test_inputs_at_the_training_range():
    u, y = linear_system(120)  # one input column
    config = PRSSMConfig(**SMALL, clip_inputs=True)
    clipped = make_prssm_trainer(config, u[:80], y[:80])
    plain = make_prssm_trainer(dataclasses.replace(config, clip_inputs=False), u[:80], y[:80])
    key = jax.random.key(5)
    params = clipped.init(key).params._replace(
        log_kernel_std=jnp.full((config.latent_dim,), math.log(2.0))  # f depends on u
    )
    lo, hi = float(u[:80].min()), float(u[:80].max())
    wide = jnp.asarray(np.linspace(lo - 3.0, hi + 3.0, 40)[:, None], jnp.float32)
    window = jnp.asarray(y[80:84], jnp.float32)
    by_hand = jnp.clip(wide, lo, hi)
    for a, b in zip(
        clipped.predict(params, wide, window, key),
        plain.predict(params, by_hand, window, key),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # the clip changes the simulation (so the comparison above can fail), and inputs inside
    # the range pass through untouched
    assert not np.allclose(
        plain.predict(params, wide, window, key)[0],
        plain.predict(params, by_hand, window, key)[0],
    )
    inside = jnp.asarray(u[80:], jnp.float32).clip(lo, hi)
    for a, b in zip(
        clipped.predict(params, inside, window, key),
        plain.predict(params, inside, window, key),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


def test_loader_splits_normalises_with_training_statistics_and_refuses_bad_files(tmp_path):
    u, y = linear_system(100)
    path = str(tmp_path / "sys.csv")
    write_sysid_csv(path, u, y)
    d = load_sysid_csv(path, 0.6)
    assert d.u_train.shape == (60, 1) and d.y_test.shape == (40, 1)
    np.testing.assert_allclose(d.y_mean, y[:60].mean(0))
    _, yn_train, _, yn_test = d.normalized()
    np.testing.assert_allclose(yn_train.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(yn_test, (y[60:] - y[:60].mean(0)) / y[:60].std(0))
    assert load_sysid_csv(path, 30).u_train.shape == (30, 1)
    with pytest.raises(DataError, match="does not exist"):
        load_sysid_csv(str(tmp_path / "missing.csv"))
    with pytest.raises(DataError, match="split"):
        load_sysid_csv(path, 1.5)
    bad = tmp_path / "bad.csv"
    for text, needle in [
        ("a,b\n1,2\n3,4\n", "u\\.\\.\\."),
        ("u,y\n1,2\n3,nan\n5,6\n7,8\n", "NaN"),
        ("u,y\n1,2\n\n3\n5,6\n7,8\n", "line 4 has 1 values; the header has 2"),  # blank skipped
        ("u,y\n1,2\n3,x\n5,6\n7,8\n", "line 3 has a non-numeric value"),
        ("u,y\n", "no data rows"),
        ("", "empty"),
    ]:
        bad.write_text(text)
        with pytest.raises(DataError, match=needle):
            load_sysid_csv(str(bad))
    with pytest.raises(DataError, match="both parts need at least 2"):
        load_sysid_csv(path, 99)


def test_arx_recovers_a_noiseless_system_and_simulates_it():
    rng = np.random.default_rng(1)
    u = rng.normal(size=(200, 1))
    y = np.zeros((200, 1))
    for t in range(2, 200):
        y[t] = 1.2 * y[t - 1] - 0.5 * y[t - 2] + 0.3 * u[t - 1] + 0.1
    theta = fit_arx(u, y, 2, 1)
    np.testing.assert_allclose(theta[:, 0], [1.2, -0.5, 0.3, 0.1], atol=1e-8)
    np.testing.assert_allclose(simulate_arx(theta, u, y[:2], 2, 1), y, atol=1e-8)
    _, na, nb, rmse = select_arx(u, y, max_order=3)
    assert rmse < 1e-8 and na >= 2
    with pytest.raises(ValueError, match="fit_arx: need na, nb >= 1"):
        fit_arx(u[:3], y[:3], 4, 1)


def test_gaussian_metrics_by_hand():
    m = gaussian_metrics(np.array([[1.0], [3.0]]), np.array([[1.0], [0.0]]), np.ones((2, 1)))
    assert m["rmse"] == pytest.approx(math.sqrt(4.5))
    assert m["coverage_2std"] == 0.5  # errors 0 and 3 against a std of 1
    assert m["log_likelihood"] == pytest.approx(-0.5 * math.log(2 * math.pi) - 2.25)
    with pytest.raises(ValueError, match="must have one shape"):  # [T, 1] against [T]
        gaussian_metrics(np.array([[1.0], [3.0]]), np.array([1.0, 0.0]), np.ones((2, 1)))


def test_mixture_moments_equal_pooled_samples():
    """Each member's predictive distribution as a two-point sample set with exactly its mean
    and variance; pooling the sets gives the mixture's moments."""
    rng = np.random.default_rng(0)
    mean, var = rng.normal(size=(3, 5, 2)), rng.uniform(0.1, 2.0, size=(3, 5, 2))
    pooled = np.concatenate([mean - np.sqrt(var), mean + np.sqrt(var)], axis=0)
    m, v = mixture_moments(mean, var)
    np.testing.assert_allclose(m, pooled.mean(0), atol=1e-12)
    np.testing.assert_allclose(v, pooled.var(0), atol=1e-12)
    m1, v1 = mixture_moments(mean[:1], var[:1])  # one member: itself
    np.testing.assert_array_equal(m1, mean[0])
    np.testing.assert_allclose(v1, var[0], atol=1e-15)
    with pytest.raises(ValueError, match="mean_KTD"):
        mixture_moments(mean, var[:2])


def test_config_is_validated_before_anything_runs():
    with pytest.raises(ConfigError, match="learning_rate"):
        validate(PRSSMConfig(learning_rate=-1.0))
    with pytest.raises(ConfigError, match="recognition_window"):
        validate(PRSSMConfig(recognition_window=60, seq_len=50))


def test_learns_a_linear_system_and_resumes_exactly(tmp_path):
    u, y = linear_system()
    path = str(tmp_path / "sys.csv")
    write_sysid_csv(path, u, y)
    config = PRSSMConfig(
        **SMALL, data=path, iterations=300, eval_every=100, learning_rate=0.02, num_seeds=2
    )
    full = run_prssm(config, run_dir=str(tmp_path / "full"), progress=False)
    mean_rmse = np.sqrt(np.mean((y[200:] - y[:200].mean()) ** 2))
    assert full.results["rmse_mean"] < 0.3 * mean_rmse, (full.results, mean_rmse)
    assert 0.8 <= full.results["coverage_2std_mean"] <= 1.0
    assert (full.results["iterations"], full.results["out_of_time"]) == (300, False)
    # the two seeds as an ensemble: the RMSE of the averaged mean is at most the mean RMSE
    ens = full.results["ensemble"]
    assert ens["rmse"] <= full.results["rmse_mean"] + 1e-12
    direct = gaussian_metrics(y[200:], *mixture_moments(*full.prediction))
    assert ens == pytest.approx(direct, rel=1e-5)
    for name in ("config.json", "metrics.csv", "results.json", "free_simulation.png"):
        assert os.path.exists(tmp_path / "full" / name)
    # interrupted after one chunk, then resumed: the same parameters as without the break
    part = run_prssm(config, run_dir=str(tmp_path / "part"), progress=False, max_chunks=1)
    assert part.interrupted and not part.results
    resumed = run_prssm(resume=str(tmp_path / "part"), progress=False)
    assert not resumed.interrupted
    for a, b in zip(jax.tree.leaves(full.state), jax.tree.leaves(resumed.state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert resumed.results["rmse_mean"] == full.results["rmse_mean"]
    with pytest.raises(FileExistsError):
        run_prssm(config, run_dir=str(tmp_path / "full"), progress=False)


def test_evaluate_prssm_changes_only_evaluation_fields_and_matches_a_fresh_run(tmp_path):
    u, y = linear_system(200, seed=1, widen=(100, 200, 2.5))  # test inputs leave the range
    path = str(tmp_path / "sys.csv")
    write_sysid_csv(path, u, y)
    config = PRSSMConfig(
        **SMALL, data=path, iterations=40, eval_every=20, learning_rate=0.02, num_seeds=2
    )
    plain = run_prssm(config, run_dir=str(tmp_path / "plain"), progress=False, plot=False)
    with open(tmp_path / "plain" / "results.json") as f:
        written = f.read()
    for changes in (dict(clip_inputs=True), dict(clip_inputs=True, eval_samples=50)):
        fresh = run_prssm(
            dataclasses.replace(config, **changes),
            run_dir=str(tmp_path / "_".join(f"{k}{v}" for k, v in changes.items())),
            progress=False,
            plot=False,
        )
        again = evaluate_prssm(str(tmp_path / "plain"), **changes)
        for a, b in zip(fresh.prediction, again.prediction, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
        for key in ("rmse_mean", "log_likelihood_mean", "coverage_2std_mean", "iterations"):
            assert again.results[key] == pytest.approx(fresh.results[key], rel=1e-6)
        assert again.results["ensemble"] == pytest.approx(fresh.results["ensemble"], rel=1e-6)
        assert again.results["train_seconds"] == plain.results["train_seconds"]
    # the clip changed the simulation, so the comparison above can fail
    assert abs(again.results["rmse_mean"] - plain.results["rmse_mean"]) > 1e-4
    # unchanged fields give the run's own results; nothing in the folder was rewritten
    same = evaluate_prssm(str(tmp_path / "plain"))
    for a, b in zip(same.results["per_seed"], plain.results["per_seed"], strict=True):
        assert a == pytest.approx(b, rel=1e-6)
    with open(tmp_path / "plain" / "results.json") as f:
        assert f.read() == written
    with pytest.raises(ConfigError, match="learning_rate: changes the training"):
        evaluate_prssm(str(tmp_path / "plain"), learning_rate=0.1)
    with pytest.raises(ConfigError, match="eval_samples"):
        evaluate_prssm(str(tmp_path / "plain"), eval_samples=0)
    run_prssm(config, run_dir=str(tmp_path / "part"), progress=False, max_chunks=1)
    with pytest.raises(CheckpointError, match="no finished run"):
        evaluate_prssm(str(tmp_path / "part"), clip_inputs=True)


def test_rung_candidates_pick_the_models_below_each_rung():
    from benchmarks.prssm_sysid import rung_candidates

    none = dict(lengthscale_ladder=1.0, lengthscale_rungs=0)
    four = PRSSMConfig(lengthscale_ladder=2.0, lengthscale_rungs=4, num_seeds=8)
    assert rung_candidates(four) == [
        (none, [0, 4]),
        (dict(lengthscale_rungs=2), [0, 1, 4, 5]),
        (dict(lengthscale_rungs=3), [0, 1, 2, 4, 5, 6]),
        (dict(lengthscale_rungs=4), list(range(8))),
    ]
    # rungs 0: one rung per model; one model: no ladder to choose from
    assert rung_candidates(PRSSMConfig(lengthscale_ladder=2.0, num_seeds=3))[2] == (
        dict(lengthscale_rungs=3),
        [0, 1, 2],
    )
    assert rung_candidates(PRSSMConfig(lengthscale_ladder=2.0)) == [(none, [0])]


def test_benchmark_selection_trains_once_for_candidates_that_differ_only_in_evaluation(
    tmp_path,
):
    from benchmarks.prssm_sysid import select_on_training_half

    # the training half's last quarter (its validation part) leaves the range
    u, y = linear_system(320, seed=2, widen=(120, 160, 3.0))
    path = str(tmp_path / "sys.csv")
    write_sysid_csv(path, u, y)
    base = PRSSMConfig(
        **SMALL, data=path, iterations=20, eval_every=20, learning_rate=0.02, lengthscale_ladder=3.0
    )
    grid = [dict(clip_inputs=False), dict(clip_inputs=True)]
    chosen, rows, seconds = select_on_training_half(
        base, load_sysid_csv(path), grid, 2, str(tmp_path / "sel"), "sys", True, True
    )
    # each clip value with R = 1 (model 0 alone, no ladder) and R = 2 (both rungs)
    none = dict(lengthscale_ladder=1.0, lengthscale_rungs=0)
    assert [r["overrides"] for r in rows] == [
        dict(clip_inputs=c, **fields)
        for c in (False, True)
        for fields in (none, dict(lengthscale_rungs=2))
    ]
    assert [r["models_of"] for r in rows] == [None, None, "clip_inputs=False", "clip_inputs=False"]
    assert seconds == rows[0]["train_seconds"] == rows[3]["train_seconds"]
    # one run folder: the clipped candidates trained nothing
    assert sorted(os.listdir(tmp_path / "sel")) == ["clip_inputs=False", "sys_training_half.csv"]
    assert rows[0]["rmse_mean"] != rows[2]["rmse_mean"]  # the clip mattered
    for r in rows:
        if len(r["models"]) == 1:  # a mixture of one model is that model
            assert r["mixture"]["rmse"] == pytest.approx(r["rmse_mean"], rel=1e-9)
        else:  # the RMSE of the averaged mean is at most the models' mean RMSE
            assert r["mixture"]["rmse"] <= r["rmse_mean"] + 1e-12
    assert chosen == min(rows, key=lambda r: r["mixture"]["rmse"])["overrides"]


def test_cli_trains_prssm_and_reports_bad_data(tmp_path, capsys):
    u, y = linear_system(200)
    path = str(tmp_path / "sys.csv")
    write_sysid_csv(path, u, y)
    run_dir = str(tmp_path / "run")
    argv = [
        "train",
        "prssm",
        "--data",
        path,
        "--iterations",
        "20",
        "--eval-every",
        "10",
        "--latent-dim",
        "2",
        "--num-samples",
        "4",
        "--seq-len",
        "20",
        "--recognition-window",
        "4",
        "--eval-samples",
        "50",
        "--run-dir",
        run_dir,
        "--no-progress",
    ]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "test RMSE" in out
    with open(os.path.join(run_dir, "results.json")) as f:
        assert len(json.load(f)["per_seed"]) == 1
    missing = ["--data", str(tmp_path / "nope.csv"), "--run-dir", str(tmp_path / "failed")]
    assert cli.main(["train", "prssm", *missing]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "failed").exists()  # a failed start leaves no run folder
    short_test = [
        "train",
        "prssm",
        "--data",
        path,
        "--split",
        "195",
        "--run-dir",
        str(tmp_path / "short"),
    ]
    assert cli.main(short_test) == 2
    assert "recognition_window" in capsys.readouterr().err


def test_benchmark_overrides_are_typed_by_the_config():
    from rlax_zoo.config import parse_overrides

    out = parse_overrides(PRSSMConfig, ["seq_len=50", "shared_noise=true", "lr_schedule=constant"])
    assert out == {"seq_len": 50, "shared_noise": True, "lr_schedule": "constant"}
    with pytest.raises(ConfigError, match="nope"):
        parse_overrides(PRSSMConfig, ["nope=1"])
    assert parse_overrides(PRSSMConfig, ["shared_noise=No"]) == {"shared_noise": False}
    for item, wanted in [
        ("shared_noise=flase", "shared_noise must be true or false"),
        ("seq_len=0.5", "seq_len must be an integer"),
        ("learning_rate=fast", "learning_rate must be a number"),
    ]:
        with pytest.raises(ConfigError, match=wanted):
            parse_overrides(PRSSMConfig, [item])


def test_replace_given_keeps_none_fields_and_validates():
    from rlax_zoo.config import replace_given

    base = PRSSMConfig()
    assert replace_given(base, seq_len=None) is base
    new = replace_given(base, seq_len=50, batch_size=None)
    assert (new.seq_len, new.batch_size) == (50, base.batch_size)
    with pytest.raises(ConfigError, match="seq_len"):
        replace_given(base, seq_len=1)  # below its low of 2
