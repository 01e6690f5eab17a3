"""The JAX CartPole-v1 against envpool's: dynamics, flags, auto-reset, and use by async threads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlax_zoo.agents import async_methods as am
from rlax_zoo.envs import jax_cartpole as jc
from rlax_zoo.envs.envpool_env import EnvError, make_vec_env


def test_dynamics_and_flags_match_envpool_step_by_step():
    """Random actions in 4 envpool envs for 600 steps; from every observation that is not a
    reset step, the JAX step predicts envpool's next observation to 1e-5 and its terminated
    flag exactly; envpool's reset steps have reward 0 like ours."""
    vec = make_vec_env("CartPole-v1", 4, seed=5)
    rng = np.random.default_rng(0)
    handle, obs, prev_done = vec.handle, np.asarray(vec.first_obs), np.zeros(4, bool)
    checked = ended = 0
    for _ in range(600):
        action = rng.integers(0, 2, size=4).astype(np.int32)
        handle, (nobs, rew, term, trunc, _) = vec.step(handle, jnp.asarray(action))
        nobs, rew, term, trunc = map(np.asarray, (nobs, rew, term, trunc))
        live = ~prev_done
        pred = np.asarray(jc.dynamics(jnp.asarray(obs), jnp.asarray(action)))
        np.testing.assert_allclose(pred[live], nobs[live], atol=1e-5)
        failed = (np.abs(pred[:, 0]) > jc.X_LIMIT) | (np.abs(pred[:, 2]) > jc.THETA_LIMIT)
        np.testing.assert_array_equal(failed[live], term[live])
        assert np.all(rew[prev_done] == 0) and np.all(rew[live] == 1)
        checked, ended = checked + live.sum(), ended + term.sum()
        obs, prev_done = nobs, term | trunc
    assert checked > 2000 and ended > 50  # many steps and many terminations were compared


def test_auto_reset_and_truncation_follow_envpool():
    vec = jc.make_jax_cartpole(3, seed=0)
    state = vec.handle._replace(elapsed=jnp.array([0, 498, 10], jnp.int32))
    state = state._replace(physics=state.physics.at[2, 2].set(0.2094))  # env 2 about to fall
    step = jax.jit(vec.step)
    state, (obs, rew, term, trunc, info) = step(state, jnp.array([0, 1, 0], jnp.int32))
    np.testing.assert_array_equal(np.asarray(term), [False, False, True])
    np.testing.assert_array_equal(np.asarray(trunc), [False, False, False])
    state, (obs, rew, term, trunc, info) = step(state, jnp.array([1, 0, 1], jnp.int32))
    # env 1 reaches 500 steps: truncated, not terminated; env 2 takes its reset step
    np.testing.assert_array_equal(np.asarray(trunc), [False, True, False])
    np.testing.assert_array_equal(np.asarray(term), [False, False, False])
    np.testing.assert_array_equal(np.asarray(rew), [1.0, 1.0, 0.0])
    assert int(info["elapsed_step"][2]) == 0 and np.all(np.abs(np.asarray(obs[2])) < 0.05)
    state, (obs, rew, term, trunc, info) = step(state, jnp.array([1, 0, 1], jnp.int32))
    assert float(rew[1]) == 0.0 and int(info["elapsed_step"][1]) == 0  # env 1's reset step
    assert int(info["elapsed_step"][2]) == 1


def test_random_policy_episode_lengths_like_envpool():
    """Mean episode length under uniform random actions: about 22 steps in both envs."""

    def mean_length(vec, steps=3000):
        rng = np.random.default_rng(1)
        step, handle, lengths = jax.jit(vec.step), vec.handle, []
        for _ in range(steps):
            a = jnp.asarray(rng.integers(0, 2, size=vec.num_envs).astype(np.int32))
            handle, (_, _, term, trunc, info) = step(handle, a)
            done = np.asarray(term | trunc)
            lengths.extend(np.asarray(info["elapsed_step"])[done])
        return np.mean(lengths), len(lengths)

    ours, n_ours = mean_length(jc.make_jax_cartpole(8, seed=0))
    theirs, n_theirs = mean_length(make_vec_env("CartPole-v1", 8, seed=0))
    assert n_ours > 500 and n_theirs > 500
    assert abs(ours - theirs) < 2.0 and 18 < ours < 26


def test_bad_num_envs():
    with pytest.raises(EnvError, match="num_envs"):
        jc.make_jax_cartpole(0, seed=0)


def test_async_threads_run_on_the_jax_env():
    cfg = am.AsyncConfig(method="a3c", threads=2, envs_per_thread=4, eval_envs=2)
    trainer = am.make_async(cfg, make_env=jc.make_jax_cartpole)
    state = trainer.init_state()
    _, state, out = trainer.run_chunk(None, state, True, 30)
    assert int(state.env_steps) == 30 * 5 * 4 and out.segments_per_thread.min() > 0
    assert np.all(np.isfinite(out.losses)) and out.episodes.shape[0] > 0
    assert np.all(out.episodes[:, 2] >= 8)  # CartPole cannot fall in fewer than 8 steps
    assert out.eval_returns.shape == (2,)
