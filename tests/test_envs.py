"""The envpool behaviour the agents rely on: auto-reset on the next step, determinism."""

import jax.numpy as jnp
import numpy as np
import pytest

from rlax_zoo.envs.envpool_env import EnvError, check_env_id, make_vec_env, replay_actions


def test_truncation_then_reset_step():
    vec = make_vec_env("CartPole-v1", 2, seed=3, max_episode_steps=5)
    h, rows = vec.handle, []
    for _ in range(7):
        h, (obs, rew, term, trunc, info) = vec.step(h, jnp.zeros(2, jnp.int32))
        rows.append(
            (np.asarray(rew), np.asarray(term), np.asarray(trunc), np.asarray(info["elapsed_step"]))
        )
    rew, term, trunc, elapsed = (np.stack(x) for x in zip(*rows, strict=True))
    assert trunc[4].all() and not term[4].any()  # the time limit is truncation
    assert (elapsed[5] == 0).all() and (rew[5] == 0).all()  # next step: the reset step
    assert not trunc[5].any() and (elapsed[6] == 1).all()


def test_same_seed_and_actions_same_observations():
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 2, size=(300, 4)).astype(np.int32)
    _, obs_a = replay_actions(make_vec_env("CartPole-v1", 4, seed=11), actions, chunk=128)
    _, obs_b = replay_actions(make_vec_env("CartPole-v1", 4, seed=11), actions, chunk=128)
    _, obs_c = replay_actions(make_vec_env("CartPole-v1", 4, seed=12), actions, chunk=128)
    np.testing.assert_array_equal(obs_a, obs_b)
    assert not np.array_equal(obs_a, obs_c)


def test_env_id_and_threads_errors():
    check_env_id("Breakout-v5")
    with pytest.raises(EnvError, match="Acrobot-v1"):
        check_env_id("Acrobot-v2")
    with pytest.raises(EnvError, match="num_envs"):
        make_vec_env("CartPole-v1", 0, seed=0)
    with pytest.raises(EnvError, match="num_threads"):
        make_vec_env("CartPole-v1", 2, seed=0, num_threads=-3)
