"""DreamerV3 (rlax_zoo.agents.dreamer) and its chain task (rlax_zoo.envs.chain)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlax_zoo import cli
from rlax_zoo.agents import dreamer as D
from rlax_zoo.checkpointing import CheckpointError
from rlax_zoo.config import ConfigError
from rlax_zoo.envs.chain import make_chain
from rlax_zoo.envs.envpool_env import EnvError

# A configuration small enough to learn the chain in seconds.
SMALL = dict(
    env_id="Chain-v0",
    prefill=64,
    env_steps=8,
    units=64,
    deter=64,
    batch_size=8,
    sequence_length=16,
    horizon=10,
    model_lr=1e-3,
    actor_lr=3e-4,
    critic_lr=3e-4,
)


def test_chain_follows_its_rules_and_envpool_auto_reset():
    length, limit, n = 4, 6, 3
    env = make_chain(n, 0, length, limit)
    step = jax.jit(env.step)
    rng = np.random.default_rng(0)
    cell, elapsed, reset = np.zeros(n, int), np.zeros(n, int), np.zeros(n, bool)
    handle = env.handle
    saw = dict(terminated=0, truncated=0)
    for _ in range(300):
        a = rng.integers(0, 2, n)
        handle, (obs, r, term, trunc, _) = step(handle, jnp.asarray(a, jnp.int32))
        moved = np.clip(cell + np.where(a == 1, 1, -1), 0, length - 1)
        e = elapsed + 1
        t_ref = (moved == length - 1) & ~reset
        tr_ref = (e >= limit) & (moved != length - 1) & ~reset
        cell = np.where(reset, 0, moved)
        elapsed = np.where(reset, 0, e)
        np.testing.assert_array_equal(np.asarray(obs).argmax(-1), cell)
        np.testing.assert_array_equal(term, t_ref)
        np.testing.assert_array_equal(trunc, tr_ref)
        np.testing.assert_array_equal(r, t_ref.astype(np.float32))
        reset = t_ref | tr_ref
        saw["terminated"] += t_ref.sum()
        saw["truncated"] += tr_ref.sum()
    assert saw["terminated"] > 10 and saw["truncated"] > 10


def test_replay_records_mark_first_last_and_termination():
    """The prefill's records, in time order per env: is_first exactly after an episode's last
    record, terminated only at the goal (reward 1), truncations not terminal."""
    config = D.DreamerConfig(**SMALL)
    state = D.make_dreamer(config).init(jax.random.PRNGKey(0))
    replay = state.replay
    steps = config.prefill
    assert int(replay.size) == steps
    cell = np.asarray(replay.obs[:steps]).argmax(-1)  # [T, N]
    first = np.asarray(replay.is_first[:steps])
    term = np.asarray(replay.terminated[:steps]) > 0
    reward = np.asarray(replay.reward[:steps])
    assert first[0].all()
    np.testing.assert_array_equal(term, cell == 4)  # the goal of the length-5 chain
    np.testing.assert_array_equal(reward, term.astype(np.float32))
    assert (cell[first] == 0).all()
    # Episodes: from each first record to the record before the next one.
    lengths, truncated = [], 0
    for e in range(config.num_envs):
        starts = np.flatnonzero(first[:, e])
        for s, nxt in zip(starts[:-1], starts[1:], strict=True):
            last = nxt - 1
            lengths.append(nxt - s)
            assert not term[s:last, e].any()  # nothing terminal before the last record
            truncated += not term[last, e]
            if not term[last, e]:
                assert nxt - s == 13  # 12 moves of the time limit, then the reset step
    assert truncated > 0 and len(lengths) > truncated


def test_sample_sequences_are_consecutive_and_newest():
    cap, n = 10, 3
    t = np.arange(25)  # 25 steps written into 10 rows: rows hold steps 15..24
    rows = t % cap
    obs = np.zeros((cap, n, 1), np.float32)
    obs[rows, :, 0] = t[:, None] + 100 * np.arange(n)
    replay = D.SequenceReplay(
        jnp.asarray(obs),
        jnp.zeros((cap, n), jnp.int32),
        jnp.zeros((cap, n)),
        jnp.zeros((cap, n)),
        jnp.zeros((cap, n), bool),
        jnp.int32(25 % cap),
        jnp.int32(cap),
    )
    batch = D.sample_sequences(replay, jax.random.PRNGKey(0), 500, 4)
    seq = np.asarray(batch["obs"][..., 0])
    step = seq % 100
    np.testing.assert_array_equal(np.diff(step, axis=1), 1)  # consecutive steps of one env
    np.testing.assert_array_equal(np.diff(seq // 100, axis=1), 0)
    assert step.min() == 15 and step.max() == 24  # only the newest rows, every one reachable
    assert len(np.unique(seq[:, 0] // 100)) == n


def test_world_model_state_resets_at_episode_starts():
    config = D.DreamerConfig(**SMALL)
    trainer = D.make_dreamer(config)
    state = trainer.init(jax.random.PRNGKey(1))
    batch = D.sample_sequences(state.replay, jax.random.PRNGKey(2), 32, 16)
    params = state.params["model"]
    loss, (parts, h, z) = D.world_model_loss(
        trainer.model, params, batch, jax.random.PRNGKey(3), config
    )
    assert np.isfinite(float(loss)) and set(parts) >= {"decoder_loss", "kl"}
    # kl is the mean of max(free_nats, KL), kl_raw the mean KL: never above it
    assert float(parts["kl"]) >= max(config.free_nats, float(parts["kl_raw"])) - 1e-6
    assert float(parts["kl_raw"]) >= 0.0
    first = np.asarray(batch["is_first"])
    assert first[:, 1:].any()  # some sequence crosses an episode boundary
    zeros = (jnp.zeros((1, config.deter)), jnp.zeros((1, config.groups * config.classes)))
    h0 = trainer.model.apply(params, *zeros, jnp.zeros((1, 2)), method=D.WorldModel.sequence)
    np.testing.assert_allclose(
        np.asarray(h)[first], np.broadcast_to(h0, (first.sum(), 64)), atol=1e-6
    )


def test_imagined_returns_against_numpy():
    rng = np.random.default_rng(0)
    h, m, gamma, lam = 5, 3, 0.9, 0.8
    reward = rng.normal(size=(h, m)).astype(np.float32)
    cont = rng.uniform(size=(h + 1, m)).astype(np.float32)
    values = rng.normal(size=(h + 1, m)).astype(np.float32)
    traj = D.Imagined(jnp.zeros((h + 1, m, 2)), jnp.zeros((h, m), jnp.int32), reward, cont)
    returns, weights = D.imagined_returns(traj, jnp.asarray(values), gamma, lam)
    expected = np.zeros((h, m))
    nxt = values[h]
    for i in reversed(range(h)):
        nxt = reward[i] + gamma * cont[i + 1] * ((1 - lam) * values[i + 1] + lam * nxt)
        expected[i] = nxt
    np.testing.assert_allclose(returns, expected, rtol=1e-5)
    w = np.array([gamma**i * np.prod(cont[: i + 1], 0) for i in range(h)])
    np.testing.assert_allclose(weights, w, rtol=1e-5)


def test_replay_returns_cut_at_episode_ends():
    """Hand-made sequence: steps 0-2 of one episode, step 2 terminal (reward 1), step 3 starts
    the next episode, which is truncated at step 5; step 6 starts a third."""
    gamma, lam = 0.9, 0.5
    reward = np.array([[0.0, 0.5, 1.0, 0.0, 0.2, 0.3, 0.0, 0.4]], np.float32)
    terminated = np.array([[0, 0, 1, 0, 0, 0, 0, 0]], np.float32)
    first = np.array([[0, 0, 0, 1, 0, 0, 1, 0]], bool)
    values = np.arange(1, 9, dtype=np.float32)[None] * 0.1
    batch = dict(
        reward=jnp.asarray(reward), terminated=jnp.asarray(terminated), is_first=jnp.asarray(first)
    )
    g, mask = D.replay_returns(batch, jnp.asarray(values), gamma, lam)
    v, r = values[0], reward[0]
    expected = np.zeros(7)
    expected[6] = r[7] + gamma * v[7]  # the last target bootstraps from v_7
    expected[5] = v[5]  # step 5 ends its episode (truncated): no target, the chain is cut
    expected[4] = r[5] + gamma * ((1 - lam) * v[5] + lam * expected[5])
    expected[3] = r[4] + gamma * ((1 - lam) * v[4] + lam * expected[4])
    expected[2] = v[2]  # terminal: no target
    expected[1] = r[2] + 0.0  # the next step is terminal: c = 0, no bootstrap
    expected[0] = r[1] + gamma * ((1 - lam) * v[1] + lam * expected[1])
    np.testing.assert_allclose(g[0], expected, rtol=1e-6)
    np.testing.assert_array_equal(mask[0], [1, 1, 0, 1, 1, 0, 1])


@pytest.mark.parametrize("changes", [{}, dict(replay_bootstrap="imagined", actor_init_scale=0.01)])
def test_dreamer_learns_the_chain(changes):
    """The learning curve: from a mostly random policy to the shortest path (4 moves and the
    reset step per episode, return 1) within 400 iterations; also with the authors' code's
    replay bootstrap and near-uniform first policy."""
    config = D.DreamerConfig(**SMALL, iterations=400, **changes)
    trainer = D.make_dreamer(config)
    state = trainer.init(jax.random.PRNGKey(config.seed))
    rows = []
    for _ in range(4):
        state, m = trainer.train_chunk(state, 100)
        rows.append(D.chunk_row(state, m))
    steps = 100 * config.env_steps * config.num_envs
    assert rows[0]["episodes_in_chunk"] < 0.7 * steps / 5  # early: long or timed-out episodes
    assert rows[-1]["mean_return"] > 0.98
    assert rows[-1]["episodes_in_chunk"] > 0.9 * steps / 5  # late: the shortest path
    assert all(np.isfinite(rows[-1][k]) for k in ("model_loss", "actor_loss", "critic_loss"))


# A configuration that runs in seconds: for runs and resumes, not for learning.
TINY = dict(
    prefill=16,
    env_steps=2,
    units=16,
    deter=16,
    batch_size=4,
    sequence_length=8,
    horizon=3,
    iterations=4,
    eval_every=2,
)


def test_actor_init_scale_scales_the_first_policy():
    """actor_init_scale multiplies the actor's output layer at initialisation (the same
    draw), so the first policy's logits scale with it: 0 gives the uniform policy."""
    feat = jax.random.normal(jax.random.PRNGKey(5), (16, 16 + 8 * 8))  # deter + groups*classes
    logits = {}
    for scale in (1.0, 0.01, 0.0):
        trainer = D.make_dreamer(D.DreamerConfig(env_id="Chain-v0", actor_init_scale=scale, **TINY))
        state = trainer.init(jax.random.PRNGKey(0))
        logits[scale] = np.asarray(trainer.actor.apply(state.params["actor"], feat))
    assert np.abs(logits[1.0]).max() > 0.1
    np.testing.assert_allclose(logits[0.01], 0.01 * logits[1.0], rtol=1e-4, atol=1e-8)
    np.testing.assert_array_equal(logits[0.0], 0.0)


def test_replay_bootstrap_changes_only_the_critic():
    """replay_bootstrap='imagined' feeds the replay loss's lambda-returns the imagined returns
    R_0 instead of the critic's values: after one update from the same state, the world model
    and the actor are the same as with 'critic', the critic and its slow copy are not."""
    params = {}
    for boot in ("critic", "imagined"):
        trainer = D.make_dreamer(D.DreamerConfig(env_id="Chain-v0", replay_bootstrap=boot, **TINY))
        state, _ = trainer.train_chunk(trainer.init(jax.random.PRNGKey(0)), 1)
        params[boot] = state.params
    for name in ("model", "actor", "critic", "slow_critic"):
        same = all(
            np.array_equal(a, b)
            for a, b in zip(
                jax.tree.leaves(params["critic"][name]),
                jax.tree.leaves(params["imagined"][name]),
                strict=True,
            )
        )
        assert same == (name in ("model", "actor")), name


def test_cli_run_resume_is_exact(tmp_path):
    """`rlax-zoo train dreamer` on the chain, interrupted after a chunk and resumed, ends in
    the state of an uninterrupted run."""
    flags = ["--env", "Chain-v0"]
    for name, value in TINY.items():
        flags += ["--" + name.replace("_", "-"), str(value)]
    whole = str(tmp_path / "whole")
    assert cli.main(["train", "dreamer", "--run-dir", whole, *flags]) == 0
    with open(os.path.join(whole, "results.json")) as f:
        results = json.load(f)
    assert results["iterations"] == 4 and results["env_steps"] == (16 + 4 * 2) * 4
    config = D.DreamerConfig(env_id="Chain-v0", **TINY)
    part = str(tmp_path / "part")
    first = D.run_dreamer(config, run_dir=part, progress=False, max_chunks=1)
    assert first.interrupted and not first.results and int(first.state.iteration) == 2
    resumed = D.run_dreamer(resume=part, progress=False)
    ref = D.run_dreamer(config, run_dir=str(tmp_path / "ref"), progress=False)
    for a, b in zip(jax.tree.leaves(resumed.state), jax.tree.leaves(ref.state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_envpool_run_resume_replays_the_action_log(tmp_path):
    """envpool's CartPole stepped in the jitted loop: the action log holds every action
    (the replay's too), and a run interrupted after a chunk and resumed, with a fresh env
    replayed through the log, ends in the state of an uninterrupted run. A log that does not
    lead to the saved observations is refused."""
    config = D.DreamerConfig(env_id="CartPole-v1", envpool=True, **TINY)
    ref = D.run_dreamer(config, run_dir=str(tmp_path / "ref"), progress=False)
    n, steps = config.num_envs, 16 + 4 * 2
    assert ref.state.action_log.shape == (steps, n) and int(ref.state.env_steps) == steps * n
    replay = ref.state.replay
    np.testing.assert_array_equal(ref.state.action_log, replay.action[:steps])
    assert np.all(np.isin(np.asarray(ref.state.action_log), [0, 1]))
    part = str(tmp_path / "part")
    first = D.run_dreamer(config, run_dir=part, progress=False, max_chunks=1)
    assert first.interrupted and int(first.state.iteration) == 2
    resumed = D.run_dreamer(resume=part, progress=False)
    same = lambda s: s._replace(carry=s.carry._replace(env=None))  # handles name their env
    for a, b in zip(
        jax.tree.leaves(same(resumed.state)), jax.tree.leaves(same(ref.state)), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # a damaged log: replaying it does not reach the saved observations
    damaged = first.state._replace(action_log=1 - first.state.action_log)
    with pytest.raises(CheckpointError, match="did not reproduce the saved observations"):
        D.reconnect_envpool(D.make_env(config), damaged)


def test_bad_configs_are_refused():
    with pytest.raises(ConfigError, match="replay_capacity"):
        D.check_config(D.DreamerConfig(replay_capacity=100, num_envs=4, prefill=64))
    with pytest.raises(ConfigError, match="prefill"):
        D.check_config(D.DreamerConfig(prefill=8, sequence_length=16))
    with pytest.raises(ConfigError, match="env_id: 'Acrobot-v1' is not a pure-JAX"):
        D.check_config(D.DreamerConfig(env_id="Acrobot-v1"))
    with pytest.raises(EnvError, match="env_id: unknown environment 'Chain-v0'"):
        D.check_config(D.DreamerConfig(env_id="Chain-v0", envpool=True))
    with pytest.raises(ConfigError, match="env_id: 'Pong-v5' observes"):
        D.make_dreamer(D.DreamerConfig(env_id="Pong-v5", envpool=True, num_envs=1))


def test_benchmark_trailing_means_hand_computed():
    from benchmarks.dreamer_cartpole import trailing_means

    rows = [
        dict(episodes_in_chunk=15, mean_return=10.0),
        dict(episodes_in_chunk=0, mean_return=float("nan")),
        dict(episodes_in_chunk=10, mean_return=40.0),
        dict(episodes_in_chunk=25, mean_return=100.0),
    ]
    means = trailing_means(rows)
    assert np.isnan(means[0]) and np.isnan(means[1])
    np.testing.assert_allclose(means[2:], [(15 * 10 + 10 * 40) / 25, 100.0])
