"""DQN agent: n-step folding by hand, the envpool reset step, config errors, learning, resume."""

import dataclasses
import json
import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlax_zoo import config as config_lib
from rlax_zoo import runner
from rlax_zoo.agents import dqn
from rlax_zoo.config import ConfigError, validate
from rlax_zoo.envs.envpool_env import EnvError

G = 0.9


def _window(rewards, discounts, ends, valid=None):
    n, k = np.shape(rewards)
    obs = jnp.arange(n * k, dtype=jnp.float32).reshape(n, k, 1)  # obs value = its index
    return dqn.NStepWindow(
        obs=obs,
        action=jnp.zeros((n, k), jnp.int32),
        reward=jnp.asarray(rewards, jnp.float32),
        discount=jnp.asarray(discounts, jnp.float32),
        end=jnp.asarray(ends, bool),
        valid=jnp.ones((n, k), bool) if valid is None else jnp.asarray(valid, bool),
    )


def test_n_step_transition_hand_computed():
    # 3 envs (columns), n = 3 (rows, oldest first); last_obs = 100 + env.
    # env 0: no episode end: R = 1 + .9*2 + .81*3, D = .729, next obs = last obs
    # env 1: terminated at entry 1 (discount 0): R = 1 + .9*2, D = 0, next obs = obs[2]
    # env 2: truncated at entry 0 (discount .9, end): R = 1, D = .9, next obs = obs[1]
    rewards = [[1, 1, 1], [2, 2, 2], [3, 3, 3]]
    discounts = [[G, G, G], [G, 0.0, G], [G, G, G]]
    ends = [[0, 0, 1], [0, 1, 0], [0, 0, 0]]
    w = _window(rewards, discounts, ends)
    last_obs = jnp.array([[100.0], [101.0], [102.0]])
    obs, _, ret, disc, nxt, valid = dqn.n_step_transition(w, last_obs)
    np.testing.assert_allclose(ret, [1 + G * 2 + G * G * 3, 1 + G * 2, 1], rtol=1e-6)
    np.testing.assert_allclose(disc, [G**3, 0.0, G], rtol=1e-6)
    np.testing.assert_allclose(nxt[:, 0], [100.0, 2 * 3 + 1, 1 * 3 + 2])
    np.testing.assert_allclose(obs[:, 0], [0, 1, 2])
    assert bool(valid.all())


def test_observe_drops_envpool_reset_step_and_truncation_bootstraps():
    cfg = dqn.DQNConfig(
        num_envs=1, n_step=1, buffer_size=16, batch_size=4, learning_starts=4, replay="uniform"
    )
    agent = dqn.make_agent(cfg, (1,), np.float32, 2)
    state = agent.init(jax.random.PRNGKey(0), jnp.zeros((1, 1)))
    f = jnp.array
    steps = [  # (next_obs, reward, terminated, truncated)
        (1.0, 1.0, False, False),
        (2.0, 1.0, True, False),  # terminated
        (10.0, 0.0, False, False),  # envpool reset step: not a transition
        (11.0, 1.0, False, True),  # truncated
    ]
    for next_obs, r, term, trunc in steps:
        state, _ = agent.observe(
            state, jnp.zeros((1,), jnp.int32), f([[next_obs]]), f([r]), f([term]), f([trunc])
        )
    store = state.replay.storage
    np.testing.assert_array_equal(store["valid"][:4], [True, True, False, True])
    np.testing.assert_allclose(store["discount"][:4], [G * 0 + 0.99, 0.0, 0.99, 0.99])
    np.testing.assert_allclose(store["obs"][:4, 0], [0.0, 1.0, 2.0, 10.0])
    np.testing.assert_allclose(store["next_obs"][:4, 0], [1.0, 2.0, 10.0, 11.0])


@pytest.mark.parametrize("double_q,target_tau", [(False, 0.25), (True, 1.0)])
def test_update_td_errors_and_target_network_against_numpy(double_q, target_tau):
    """One `update` on a filled replay: the TD errors of plain Q-learning (target max_a
    Q_target(s', a)) or double Q-learning (Q_target(s', argmax_a Q_online(s', a)); van Hasselt
    et al. 2016, eq. 2) recomputed in NumPy from the same minibatch, the mse loss on them, and
    the target network: Polyak-averaged with tau (soft) or copied (hard, target_period 1)."""
    cfg = dqn.DQNConfig(
        num_envs=1,
        n_step=1,
        buffer_size=8,
        batch_size=4,
        learning_starts=4,
        replay="uniform",
        double_q=double_q,
        target_tau=target_tau,
        target_period=1,
        loss="mse",
        dueling=False,
        max_grad_norm=0.0,
    )
    agent = dqn.make_agent(cfg, (2,), np.float32, 3)
    state = agent.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)))
    rng = np.random.default_rng(0)
    for i in range(6):
        term = i == 3
        state, _ = agent.observe(
            state,
            jnp.array([i % 3], jnp.int32),
            jnp.asarray(rng.normal(size=(1, 2)), jnp.float32),
            jnp.array([float(i)]),
            jnp.array([term]),
            jnp.array([False]),
        )
    # a target network far from the online one, so that the two rules differ
    leaves, tree = jax.tree.flatten(state.params)
    noisy = [p + jnp.asarray(rng.normal(size=p.shape), p.dtype) for p in leaves]
    state = state._replace(target_params=jax.tree.unflatten(tree, noisy))
    old_params, old_target = state.params, state.target_params
    new_state, out = agent.update(state)

    _, sample_key = jax.random.split(state.key)
    batch = agent.buffer.sample(state.replay, sample_key, 1.0).items
    q = np.asarray(agent.network.apply(old_params, batch["obs"]), np.float64)
    q_next_target = np.asarray(agent.network.apply(old_target, batch["next_obs"]), np.float64)
    q_next_online = np.asarray(agent.network.apply(old_params, batch["next_obs"]), np.float64)
    rows = np.arange(len(q))
    if double_q:
        bootstrap = q_next_target[rows, q_next_online.argmax(1)]
    else:
        bootstrap = q_next_target.max(1)
    a = np.asarray(batch["action"])
    target = np.asarray(batch["reward"]) + np.asarray(batch["discount"]) * bootstrap
    td = np.where(np.asarray(batch["valid"]), target - q[rows, a], 0.0)
    bootstrapped = np.asarray(batch["valid"]) & (np.asarray(batch["discount"]) > 0)
    assert np.any(bootstrapped & (q_next_online.argmax(1) != q_next_target.argmax(1)))
    assert np.any(np.asarray(batch["discount"]) == 0)  # a terminal transition: no bootstrap
    np.testing.assert_allclose(float(out.loss), np.mean(0.5 * td**2), rtol=1e-5)
    np.testing.assert_allclose(float(out.mean_abs_td), np.mean(np.abs(td)), rtol=1e-5)
    expected_target = jax.tree.map(
        lambda p, t: target_tau * p + (1 - target_tau) * t, new_state.params, old_target
    )
    for got, want in zip(
        jax.tree.leaves(new_state.target_params), jax.tree.leaves(expected_target), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("learning_rate", -1e-3, r"learning_rate: must be in \(0, inf\)"),
        ("discount", 1.5, r"discount: must be in \[0, 1\]"),
        ("batch_size", 100_000, r"batch_size: must be <= buffer_size"),
        ("replay", "fancy", r"replay: must be one of"),
        ("num_envs", 0, r"num_envs: must be in \[1, inf\)"),
        ("double_q", 1, r"double_q: must be true or false"),
        ("learning_rate", float("nan"), r"learning_rate: must be finite"),
    ],
)
def test_config_errors_name_the_field(field, value, match):
    with pytest.raises(ConfigError, match=match):
        validate(dataclasses.replace(dqn.DQNConfig(), **{field: value}))


def test_unknown_env_suggests_nearest():
    with pytest.raises(EnvError, match="CartPole-v1"):
        validate(dqn.DQNConfig(env_id="CartPol-v1"))


SMALL = dict(
    total_steps=4_000,
    num_envs=4,
    buffer_size=2_000,
    batch_size=32,
    learning_starts=400,
    iterations_per_chunk=100,
    checkpoint_every=2,
    hidden_sizes=(32, 32),
    target_period=100,
)


def test_time_budget_stops_checkpointed_counting_resumes(tmp_path, monkeypatch):
    """Chunks of 0.1 s on a fake clock, budget 0.25 s: two chunks run, then the next would pass
    the budget; a resume (same budget, 0.2 s spent) runs one more; with the budget lifted the
    resumed run ends at the schedule's last chunk with the uninterrupted run's returns."""
    clock = iter(np.arange(0.0, 1000.0, 0.1))  # each perf_counter call in runner: +0.1 s
    monkeypatch.setattr(runner, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    cfg = dqn.DQNConfig(**dict(SMALL, checkpoint_every=100), time_budget_s=0.25)
    run_dir = str(tmp_path / "budget")
    kw = dict(progress=False, plot=False)
    first = runner.run("dqn", dqn.make_dqn, cfg, run_dir=run_dir, **kw)
    with open(os.path.join(run_dir, "status.json")) as f:
        status = json.load(f)
    assert (first.out_of_time, first.interrupted, status["chunk"]) == (True, False, 2)
    assert status["out_of_time"] and status["train_seconds"] == pytest.approx(0.2)
    again = runner.run("dqn", dqn.make_dqn, cfg, resume=run_dir, **kw)
    assert again.out_of_time and again.train_seconds == pytest.approx(0.3)
    assert max(int(r["chunk"]) for r in again.metrics) == 2  # one more chunk (0, 1, then 2)
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        f.write(config_lib.to_json(dataclasses.replace(cfg, time_budget_s=0.0)))
    rest = runner.run("dqn", dqn.make_dqn, cfg, resume=run_dir, **kw)
    assert not rest.out_of_time and max(int(r["chunk"]) for r in rest.metrics) == 9
    full = runner.run(
        "dqn",
        dqn.make_dqn,
        dataclasses.replace(cfg, time_budget_s=0.0),
        run_dir=str(tmp_path / "f"),
        **kw,
    )
    assert rest.episode_returns == full.episode_returns


def test_resume_after_interrupt_equals_uninterrupted(tmp_path):
    cfg = dqn.DQNConfig(**SMALL, num_seeds=2)
    full = runner.run(
        "dqn", dqn.make_dqn, cfg, run_dir=str(tmp_path / "a"), progress=False, plot=False
    )
    part = runner.run(
        "dqn",
        dqn.make_dqn,
        cfg,
        run_dir=str(tmp_path / "b"),
        progress=False,
        plot=False,
        max_chunks=3,
    )
    assert part.interrupted
    rest = runner.run(
        "dqn", dqn.make_dqn, dqn.DQNConfig(), resume=str(tmp_path / "b"), progress=False, plot=False
    )
    assert not rest.interrupted
    assert full.episode_returns == rest.episode_returns
    assert all(len(r) > 10 for r in full.episode_returns)
    assert full.episode_returns[0] != full.episode_returns[1]  # seeds differ
    for a, b in zip(
        jax.tree.leaves(full.state.params), jax.tree.leaves(rest.state.params), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    rows_a = [(r["chunk"], r["seed"], r["loss"]) for r in full.metrics]
    rows_b = [(int(r["chunk"]), int(r["seed"]), float(r["loss"])) for r in rest.metrics]
    assert rows_a == rows_b


def test_default_agent_learns_cartpole_quickly(tmp_path):
    """The default config (double + dueling + prioritized, n-step 3) on CartPole-v1: from ~22
    (random) to a mean return well above 150 over the last 20 episodes within 20k steps."""
    cfg = dqn.DQNConfig(total_steps=20_000)
    res = runner.run(
        "dqn", dqn.make_dqn, cfg, run_dir=str(tmp_path / "r"), progress=False, plot=False
    )
    returns = res.episode_returns[0]
    assert np.mean(returns[:20]) < 60  # it starts near random
    assert np.mean(returns[-20:]) > 150, returns[-20:]


@pytest.mark.parametrize(
    "env_id,extra",
    [
        ("Acrobot-v1", {}),
        ("MountainCar-v0", {}),
        (
            "Breakout-v5",
            dict(
                buffer_size=256,
                batch_size=8,
                learning_starts=64,
                total_steps=128,
                iterations_per_chunk=8,
                reward_clip=True,
                episodic_life=True,
            ),
        ),
    ],
)
def test_other_envs_run(tmp_path, env_id, extra):
    """Vector observations (MLP torso) and Atari frames (Nature CNN, Python-driven loop)."""
    kwargs = dict(SMALL, total_steps=1_000, learning_starts=200, iterations_per_chunk=25)
    kwargs.update(extra)
    cfg = dqn.DQNConfig(env_id=env_id, **kwargs)
    res = runner.run(
        "dqn", dqn.make_dqn, cfg, run_dir=str(tmp_path / "r"), progress=False, plot=False
    )
    losses = [r["loss"] for r in res.metrics]
    assert losses[-1] > 0 and np.isfinite(losses).all()
    obs = res.state.obs
    assert obs.shape[-3:] == (4, 84, 84) if env_id.endswith("-v5") else obs.ndim == 3


def test_divergence_stops_with_a_clear_error(tmp_path):
    cfg = dqn.DQNConfig(**dict(SMALL, learning_rate=1e30, total_steps=2_000, max_grad_norm=1e30))
    with pytest.raises(FloatingPointError, match="diverged"):
        runner.run(
            "dqn", dqn.make_dqn, cfg, run_dir=str(tmp_path / "r"), progress=False, plot=False
        )
