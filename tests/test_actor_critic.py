"""A2C and REINFORCE: rollout returns by hand, envpool's reset step, learning, exact resume."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlax_zoo import runner
from rlax_zoo.agents import actor_critic as ac
from rlax_zoo.config import ConfigError, validate


def _returns(reward, terminated, truncated, next_value, gamma):
    return np.asarray(
        ac.rollout_returns(
            jnp.asarray(reward, jnp.float32),
            jnp.asarray(terminated, bool),
            jnp.asarray(truncated, bool),
            jnp.asarray(next_value, jnp.float32),
            gamma,
        )
    )


def test_rollout_returns_by_hand():
    r, v = [1.0, 1.0, 1.0, 1.0], [10.0, 20.0, 30.0, 40.0]
    # no episode end: G3 = 1 + .5*40 = 21, G2 = 11.5, G1 = 6.75, G0 = 4.375
    np.testing.assert_allclose(_returns(r, [0] * 4, [0] * 4, v, 0.5), [4.375, 6.75, 11.5, 21.0])
    # termination at t=1: G1 = 1 (no bootstrap), G0 = 1.5; after it the chain restarts
    np.testing.assert_allclose(_returns(r, [0, 1, 0, 0], [0] * 4, v, 0.5), [1.5, 1.0, 11.5, 21.0])
    # truncation at t=2: G2 = 1 + .5 V(s_3) = 16 (bootstraps from the final observation)
    np.testing.assert_allclose(_returns(r, [0] * 4, [0, 0, 1, 0], v, 0.5), [5.5, 9.0, 16.0, 21.0])


def _rollout(k=3, t=6, seed=0):
    rng = np.random.default_rng(seed)
    terminated = np.zeros((t, k), bool)
    truncated = np.zeros((t, k), bool)
    terminated[1, 0] = True
    truncated[3, 1] = True
    valid = np.ones((t, k), bool)
    valid[2, 0] = valid[4, 1] = False  # envpool's reset steps follow the episode ends
    return ac.Transition(
        obs=jnp.asarray(rng.normal(size=(t, k, 4)), jnp.float32),
        action=jnp.asarray(rng.integers(0, 2, (t, k)), jnp.int32),
        reward=jnp.asarray(rng.normal(size=(t, k)), jnp.float32),
        terminated=jnp.asarray(terminated),
        truncated=jnp.asarray(truncated),
        valid=jnp.asarray(valid),
    )


def test_reset_steps_do_not_reach_the_loss():
    """Whatever happens on envpool's reset step (reward, action) leaves the update unchanged,
    while changing a real step's reward does change it."""
    cfg = ac.A2CConfig(num_envs=3)
    agent = ac.make_agent(cfg, (4,), np.float32, 2)
    state = agent.init(jax.random.PRNGKey(0), jnp.zeros((3, 4)))
    state = state._replace(obs=jnp.ones((3, 4)))
    roll = _rollout()
    base, _ = agent.update(state, roll)
    poked = roll._replace(
        reward=roll.reward.at[2, 0].set(1e3).at[4, 1].set(-1e3),
        action=roll.action.at[2, 0].set(1 - roll.action[2, 0]),
    )
    same, _ = agent.update(state, poked)
    for a, b in zip(jax.tree.leaves(base.params), jax.tree.leaves(same.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    moved, _ = agent.update(state, roll._replace(reward=roll.reward.at[3, 0].add(5.0)))
    diff = max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(jax.tree.leaves(base.params), jax.tree.leaves(moved.params), strict=True)
    )
    assert diff > 1e-6


def test_policy_gradient_direction_raises_rewarded_action():
    """One update with a positive advantage on action 0 everywhere raises pi(0|s)."""
    cfg = ac.A2CConfig(num_envs=2, value_cost=0.0, max_grad_norm=0.0, optimizer="adam")
    agent = ac.make_agent(cfg, (4,), np.float32, 2)
    state = agent.init(jax.random.PRNGKey(1), jnp.zeros((2, 4)))
    t, k = 5, 2
    obs = jnp.ones((t, k, 4))
    roll = ac.Transition(
        obs=obs,
        action=jnp.zeros((t, k), jnp.int32),
        reward=jnp.ones((t, k)),
        terminated=jnp.zeros((t, k), bool),
        truncated=jnp.zeros((t, k), bool),
        valid=jnp.ones((t, k), bool),
    )
    state = state._replace(obs=jnp.ones((k, 4)))
    before = jax.nn.softmax(agent.network.apply(state.params, obs[0])[0])[:, 0]
    new, out = agent.update(state, roll)
    after = jax.nn.softmax(agent.network.apply(new.params, obs[0])[0])[:, 0]
    assert np.all(np.asarray(after) > np.asarray(before))
    assert float(out.entropy) > 0.6  # near-uniform initial policy over 2 actions (ln 2)


@pytest.mark.parametrize(
    "field, value", [("learning_rate", -1.0), ("discount", 1.5), ("rollout_length", 0)]
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        validate(dataclasses.replace(ac.A2CConfig(), **{field: value}))


def test_clip_per_network_clips_each_network_alone():
    # policy grads of norm 0.3 (under the clip) and value grads of norm 50 (over it): one global
    # clip would shrink both by 0.5/50.003; per network, the policy's pass unchanged and the
    # value's are scaled to norm 0.5
    net = ac.ActorCriticNetwork(2, "mlp", (8,), shared_torso=False)
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 4)))
    labels = jax.tree_util.tree_map_with_path(lambda p, _: ac.network_of(p), params)
    assert set(labels["params"]) == {"policy", "policy_torso", "value", "value_torso"}
    assert {k: v["bias"] for k, v in labels["params"].items() if "bias" in v} == {
        "policy": "policy",
        "value": "value",
    }
    rng = np.random.default_rng(0)
    grads = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), params)

    flat_labels = jax.tree.leaves(labels)

    def scaled(tree, name, norm):
        pairs = zip(jax.tree.leaves(tree), flat_labels, strict=True)
        leaves = [g for g, lab in pairs if lab == name]
        return norm / float(np.sqrt(sum(np.sum(np.square(g)) for g in leaves)))

    sp, sv = scaled(grads, "policy", 0.3), scaled(grads, "value", 50.0)
    grads = jax.tree.map(lambda g, lab: g * (sp if lab == "policy" else sv), grads, labels)
    cfg = dataclasses.replace(ac.A2CConfig(), clip_per_network=True, max_grad_norm=0.5)
    opt = ac.clip_per_network(cfg.max_grad_norm)
    out, _ = opt.update(grads, opt.init(params), params)
    for g, o, lab in zip(jax.tree.leaves(grads), jax.tree.leaves(out), flat_labels, strict=True):
        np.testing.assert_allclose(o, g if lab == "policy" else g * (0.5 / 50.0), rtol=1e-5)
    with pytest.raises(ConfigError, match="clip_per_network"):
        validate(dataclasses.replace(cfg, shared_torso=True))


def _best_mean20(returns):
    r = np.asarray(returns)
    return np.convolve(r, np.ones(20) / 20, "valid").max()


@pytest.mark.parametrize(
    "cls, steps", [(ac.A2CConfig, 300_000), (ac.ReinforceConfig, 100_000)], ids=["a2c", "reinforce"]
)
def test_learns_cartpole(tmp_path, cls, steps):
    """Default configs on CartPole-v1: from near random (~22) to a 20-episode mean above 150."""
    res = runner.run(
        "pg",
        ac.make_a2c,
        cls(total_steps=steps),
        run_dir=str(tmp_path / "r"),
        progress=False,
        plot=False,
    )
    returns = res.episode_returns[0]
    assert np.mean(returns[:20]) < 60
    assert _best_mean20(returns) > 150, _best_mean20(returns)


def test_resume_equals_uninterrupted(tmp_path):
    cfg = ac.A2CConfig(total_steps=8_000, num_seeds=2, iterations_per_chunk=25)
    kw = dict(progress=False, plot=False)
    full = runner.run("a2c", ac.make_a2c, cfg, run_dir=str(tmp_path / "a"), **kw)
    part = runner.run("a2c", ac.make_a2c, cfg, run_dir=str(tmp_path / "b"), max_chunks=3, **kw)
    assert part.interrupted
    rest = runner.run("a2c", ac.make_a2c, ac.A2CConfig(), resume=str(tmp_path / "b"), **kw)
    assert full.episode_returns == rest.episode_returns
    assert full.episode_returns[0] != full.episode_returns[1]
    for a, b in zip(
        jax.tree.leaves(full.state.params), jax.tree.leaves(rest.state.params), strict=True
    ):
        np.testing.assert_array_equal(a, b)


def test_atari_smoke(tmp_path):
    """The Nature-CNN path runs on Pong-v5 frames (Python-driven loop) with finite losses."""
    cfg = ac.A2CConfig(
        env_id="Pong-v5", num_envs=2, rollout_length=5, total_steps=40, iterations_per_chunk=2
    )
    res = runner.run("a2c", ac.make_a2c, cfg, run_dir=str(tmp_path / "p"), progress=False)
    assert len(res.metrics) == 2
    assert all(np.isfinite(row["loss"]) for row in res.metrics)


def test_reward_shaping_wrapper_trains_on_shaped_and_logs_env_reward(tmp_path):
    """With a shaped env the learner sees r + F (parameters differ from the unshaped run of
    the same seed) while the logged returns stay CartPole's own (return == length)."""
    from rlax_zoo.envs.envpool_env import make_vec_env
    from rlax_zoo.envs.shaping_wrapper import shape_vec_env

    cfg = ac.A2CConfig(total_steps=4_000, iterations_per_chunk=50)
    kw = dict(progress=False, plot=False)
    plain = runner.run("a2c", ac.make_a2c, cfg, run_dir=str(tmp_path / "a"), **kw)

    def build_shaped(config):
        env = make_vec_env(config.env_id, config.num_envs, config.seed)
        phi = lambda obs: -10.0 * jnp.abs(obs[:, 2])  # noqa: E731 - pole angle
        return ac.make_a2c(config, shape_vec_env(env, phi, config.discount))

    shaped = runner.run("a2c", build_shaped, cfg, run_dir=str(tmp_path / "b"), **kw)
    lengths = [int(r["length"]) for r in runner.read_csv(str(tmp_path / "b" / "episodes.csv"))]
    assert shaped.episode_returns[0] == [float(n) for n in lengths]
    diff = max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(
            jax.tree.leaves(plain.state.params), jax.tree.leaves(shaped.state.params), strict=True
        )
    )
    assert diff > 1e-4
