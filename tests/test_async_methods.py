"""Asynchronous methods: segment targets by hand, epsilons, threads, counters, resume."""

import dataclasses
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlax_zoo import runner
from rlax_zoo.agents import actor_critic
from rlax_zoo.agents import async_methods as am
from rlax_zoo.config import ConfigError, validate


class TabularQ:
    """A 'network' whose Q(s, .) is row s of params: obs are one-hot [B, S]."""

    @staticmethod
    def apply(params, obs):
        return obs @ params


def _segment(method):
    """Two envs, three steps over states 0..3 (one-hot), with an episode end in each env.

    env 0: s0 -a1-> s1 (r=1) -a0-> s2 (r=2, TERMINATED) -> reset step (r=0, masked) -> s3
    env 1: s1 -a0-> s2 (r=1, TRUNCATED, final obs s2) -> reset step (masked) -> s0 -a1-> s3 (r=4)
    """
    one_hot = lambda i: jax.nn.one_hot(i, 4)  # noqa: E731
    obs = jnp.stack(
        [one_hot(jnp.array([0, 1])), one_hot(jnp.array([1, 2])), one_hot(jnp.array([2, 0]))]
    )
    rollout = actor_critic.Transition(
        obs=obs,
        action=jnp.array([[1, 0], [0, 1], [1, 1]], jnp.int32),
        reward=jnp.array([[1.0, 1.0], [2.0, 0.0], [0.0, 4.0]]),
        terminated=jnp.array([[False, False], [True, False], [False, False]]),
        truncated=jnp.array([[False, True], [False, False], [False, False]]),
        valid=jnp.array([[True, True], [True, False], [False, True]]),
    )
    # obs after each step: env0: s1, s2, s3; env1: s2 (final), s0 (reset), s3
    last_obs = one_hot(jnp.array([3, 3]))
    cfg = dataclasses.replace(am.AsyncConfig(), method=method, discount=0.5)
    return rollout, last_obs, cfg


Q_ONLINE = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])
Q_TARGET = jnp.array([[10.0, 20.0], [30.0, 40.0], [50.0, 60.0], [70.0, 80.0]])


@pytest.mark.parametrize(
    "method, targets",
    [
        # q: y = r + .5 (1 - term) max Q_target(s')
        #   env0 t0: 1 + .5*40 = 21; t1: 2 (terminated).  env1 t0: 1 + .5*60 = 31 (truncation
        #   bootstraps from the final obs s2); t2: 4 + .5*80 = 44.
        ("q", {(0, 0): 21.0, (1, 0): 2.0, (0, 1): 31.0, (2, 1): 44.0}),
        # sarsa: y = r + .5 Q_target(s', a') with a' the next action taken (a' of the last step:
        #   next_action = [0, 1]); env0 t0: a'=0 -> 1 + .5*30 = 16; env1 t0: a' = 1 (taken at
        #   the reset step from s2) -> 1 + .5*60 = 31; env1 t2: a'=1 -> 4 + .5*80 = 44.
        ("sarsa", {(0, 0): 16.0, (1, 0): 2.0, (0, 1): 31.0, (2, 1): 44.0}),
        # nstep_q: env0 t0: 1 + .5*2 = 2 (the termination cuts the chain); env1 t0: truncation
        #   bootstraps 1 + .5*60 = 31; env1 t2: 4 + .5*max Q_target(s3) = 44.
        ("nstep_q", {(0, 0): 2.0, (1, 0): 2.0, (0, 1): 31.0, (2, 1): 44.0}),
    ],
)
def test_segment_targets_by_hand(method, targets):
    rollout, last_obs, cfg = _segment(method)
    next_action = jnp.array([0, 1], jnp.int32)

    def loss(params):
        return am.q_segment_loss(TabularQ, params, Q_TARGET, rollout, last_obs, next_action, cfg)[0]

    grad = jax.grad(loss)(Q_ONLINE)
    # d loss / d Q(s, a) = -(y - Q(s, a)) / num_valid, summed over the steps that visit (s, a)
    states = np.argmax(np.asarray(rollout.obs), -1)
    expected = np.zeros((4, 2))
    for (t, e), y in targets.items():
        s, a = states[t, e], int(rollout.action[t, e])
        expected[s, a] -= (y - float(Q_ONLINE[s, a])) / len(targets)
    np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-6)
    # the target network gets no gradient
    g_target = jax.grad(
        lambda tp: am.q_segment_loss(TabularQ, Q_ONLINE, tp, rollout, last_obs, next_action, cfg)[0]
    )(Q_TARGET)
    assert float(jnp.abs(g_target).sum()) == 0.0


def test_final_epsilons_follow_the_paper():
    eps = am.thread_final_epsilons(0, 30_000)
    fractions = [np.mean(eps == v) for v in am.FINAL_EPSILONS]
    np.testing.assert_allclose(fractions, am.FINAL_EPSILON_PROBS, atol=0.015)
    np.testing.assert_array_equal(am.thread_final_epsilons(3, 8), am.thread_final_epsilons(3, 8))


@pytest.mark.parametrize("field, value", [("threads", 0), ("learning_rate", -1e-3), ("t_max", 0)])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        validate(dataclasses.replace(am.A3CConfig(), **{field: value}))


@pytest.mark.parametrize("method", am.METHODS)
def test_threads_share_counter_and_parameters(method):
    """Two threads apply exactly the segments asked for; the global step counter counts every
    env step of both; both threads contribute; the target net is refreshed on schedule."""
    cfg = am.AsyncConfig(method=method, threads=2, envs_per_thread=2, t_max=5, target_period=20)
    trainer = am.make_async(cfg)
    state = trainer.init_state()
    _, state, out = trainer.run_chunk(None, state, True, 40)
    assert int(state.num_updates) == 40
    assert int(state.env_steps) == 40 * 5 * 2
    assert out.segments_per_thread.sum() == 40 and out.segments_per_thread.min() > 0
    assert np.all(np.isfinite(out.losses)) and len(out.losses) == 40
    moved = any(
        not np.array_equal(a, b)
        for a, b in zip(
            jax.tree.leaves(state.params), jax.tree.leaves(trainer.init_state().params), strict=True
        )
    )
    assert moved
    if method != "a3c":  # 400 steps is a multiple of target_period: target == params
        for a, b in zip(
            jax.tree.leaves(state.params), jax.tree.leaves(state.target_params), strict=True
        ):
            np.testing.assert_array_equal(a, b)
    # episodes are reported with in-chunk offsets (T after the update), in order
    offsets = out.episodes[:, 0]
    assert len(offsets) > 0 and np.all(np.diff(offsets) >= 0)
    assert np.all(offsets % cfg.steps_per_iteration == 0) and 0 < offsets.min() <= offsets.max()
    assert offsets.max() <= 400
    np.testing.assert_array_equal(out.episodes[:, 1], out.episodes[:, 2])  # CartPole: +1/step


def fail_second_thread(units, method: str, n: int, message: str) -> list:
    """Make units[1].<method> raise RuntimeError(message) on its n-th call, and units[0]'s
    calls wait until it has (on a loaded machine the healthy thread could otherwise finish the
    whole chunk first). Returns the list that counts units[1]'s calls."""
    calls, failed = [], threading.Event()
    failing, healthy = getattr(units[1], method), getattr(units[0], method)

    def fail_on_nth(*args):
        calls.append(1)
        if len(calls) == n:
            failed.set()
            raise RuntimeError(message)
        return failing(*args)

    def wait_for_the_failure(*args):
        assert failed.wait(timeout=120), "the failing thread never reached its failing call"
        return healthy(*args)

    setattr(units[1], method, fail_on_nth)
    setattr(units[0], method, wait_for_the_failure)
    return calls


def test_an_error_in_one_thread_reaches_the_caller():
    """A thread that fails (here its third segment raises) neither hangs the chunk nor is
    lost: the other thread finishes the segments and run_chunk re-raises the error."""
    trainer = am.make_async(am.AsyncConfig(method="q", threads=2, envs_per_thread=1, t_max=5))
    calls = fail_second_thread(trainer.workers, "segment", 3, "env crashed in thread 1")
    with pytest.raises(RuntimeError, match="env crashed in thread 1"):
        trainer.run_chunk(None, trainer.init_state(), True, 20)
    assert len(calls) == 3


def test_segment_log_matches_numpy():
    """The device log of a chunk: each segment's loss at its index, and one row (segment
    index, return, length) per finished episode, in time-major order; writes past the capacity
    are dropped but counted, and reading such a log raises."""
    cfg = am.AsyncConfig(t_max=3, envs_per_thread=2)
    rng = np.random.default_rng(0)
    log, rows, losses = am.empty_log(4, cfg), [], []
    write = jax.jit(am._write_log, static_argnums=1)
    for i in range(4):
        done = rng.random((3, 2)) < 0.4
        ret, length = rng.normal(size=(3, 2)), rng.integers(1, 9, size=(3, 2))
        loss = rng.normal()
        log = write(log, 4, jnp.float32(loss), done, ret.astype(np.float32), length)
        losses.append(loss)
        rows += [(i, ret[t, e], length[t, e]) for t in range(3) for e in range(2) if done[t, e]]
    view = am.read_log(log, 4)
    np.testing.assert_allclose(view.losses, losses, rtol=1e-6)
    np.testing.assert_allclose(view.episodes, np.array(rows).reshape(-1, 3), rtol=1e-6)
    assert log.shape == (2 + 4 + 3 * 2 * ((4 * 3 + 1) // 2 + 1),)  # the bound of empty_log
    small = am.empty_log(1, am.AsyncConfig(t_max=1, envs_per_thread=1))  # 1 loss, 2 rows
    one = np.ones((1, 1))
    for i in range(3):
        small = write(small, 1, jnp.float32(i + 7), one > 0, one, one.astype(int))
        if i == 0:
            np.testing.assert_array_equal(np.asarray(small), [1, 1, 7, 0, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(np.asarray(small)[2:], [7, 0, 1, 1, 1, 1, 1])  # no spill
    with pytest.raises(RuntimeError, match="holds 1 segments and 2 episodes"):
        am.read_log(small, 1)


def test_one_thread_is_deterministic():
    def run():
        trainer = am.make_async(am.AsyncConfig(method="nstep_q", threads=1))
        _, state, out = trainer.run_chunk(None, trainer.init_state(), True, 30)
        return state, out

    (s1, o1), (s2, o2) = run(), run()
    for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(o1.losses, o2.losses)


def test_a3c_learns_cartpole(tmp_path):
    """One thread (deterministic) from near random to a 20-episode mean above 150."""
    cfg = am.A3CConfig(threads=1, total_steps=300_000, segments_per_chunk=500)
    res = runner.run("a3c", am.make_async, cfg, run_dir=str(tmp_path / "r"), progress=False)
    returns = np.asarray(res.episode_returns[0])
    assert returns[:20].mean() < 60
    assert np.convolve(returns, np.ones(20) / 20, "valid").max() > 150


def test_checkpoint_and_resume_continue_the_counters(tmp_path):
    """Interrupted runs resume from the shared state (with fresh envs): counters continue."""
    cfg = am.AsyncQConfig(threads=2, envs_per_thread=1, total_steps=2_000, segments_per_chunk=50)
    kw = dict(progress=False, plot=False)
    part = runner.run(
        "async-q", am.make_async, cfg, run_dir=str(tmp_path / "r"), max_chunks=2, **kw
    )
    assert part.interrupted and int(part.state.env_steps) == 2 * 50 * 5
    rest = runner.run("async-q", am.make_async, am.AsyncQConfig(), resume=str(tmp_path / "r"), **kw)
    assert not rest.interrupted
    assert int(rest.state.env_steps) == 2_000 and int(rest.state.num_updates) == 400
    chunks = [int(r["chunk"]) for r in rest.metrics]
    assert chunks == list(range(8))


def test_evaluator_counts_the_second_episode_of_each_env():
    """A constant 'push left' policy: the evaluator's returns equal, per env, the length of the
    episode after the one in flight, found by stepping an identical envpool env in NumPy."""
    from rlax_zoo.envs.envpool_env import make_vec_env

    class PushLeft:
        @staticmethod
        def apply(params, obs):
            return jnp.stack([jnp.ones(obs.shape[0]), jnp.zeros(obs.shape[0])], -1)

    cfg = am.AsyncQConfig(eval_envs=3, eval_max_steps=100)
    env = make_vec_env(cfg.env_id, 3, 123)
    evaluate = am.make_evaluator(cfg, PushLeft, env)
    *_, returns = evaluate(
        None, env.handle, jnp.asarray(env.first_obs), jnp.zeros(3, bool), jax.random.PRNGKey(0)
    )
    reference = make_vec_env(cfg.env_id, 3, 123).env  # same seed, reset once, same dynamics
    ended, length, expected = np.zeros(3, int), np.zeros(3), np.full(3, np.nan)
    prev_done = np.zeros(3, bool)
    for _ in range(2 * cfg.eval_max_steps + 2):
        _, reward, term, trunc, _ = reference.step(np.zeros(3, np.int32))
        valid = ~prev_done
        length += np.where((ended == 1) & valid, reward, 0.0)
        done = (term | trunc) & valid
        for i in np.nonzero(done)[0]:
            if ended[i] == 1:
                expected[i] = length[i]
            ended[i] += 1
        prev_done = term | trunc
    np.testing.assert_array_equal(np.asarray(returns), expected)
    assert np.all(np.isfinite(expected)) and np.all(expected < 20)  # pushing left fails fast


def test_env_backend_jax_is_the_jax_cartpole():
    """`env_backend='jax'` gives each thread the in-thread JAX CartPole; other envs are refused
    with an error that names the option."""
    cfg = am.AsyncConfig(method="a3c", env_backend="jax", threads=2, envs_per_thread=2, eval_envs=2)
    trainer = am.make_async(cfg)
    assert all(w.env.env is None for w in trainer.workers) and trainer.eval_env.env is None
    _, state, out = trainer.run_chunk(None, trainer.init_state(), True, 20)
    assert int(state.env_steps) == 20 * 5 * 2 and out.segments_per_thread.min() > 0
    with pytest.raises(ConfigError, match="env_backend"):
        validate(dataclasses.replace(cfg, env_id="Acrobot-v1"))
