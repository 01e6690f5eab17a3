"""IMPALA: loss vs on-policy A2C, ratios, lag bookkeeping, threads, sharding, learning."""

import dataclasses
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_actor_critic import _rollout  # a rollout with a termination, a truncation, resets
from test_async_methods import fail_second_thread

from rlax_zoo import runner
from rlax_zoo.agents import actor_critic as ac
from rlax_zoo.agents import impala
from rlax_zoo.config import ConfigError, validate
from rlax_zoo.networks import ActorCriticNetwork

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _setup(**overrides):
    cfg = impala.ImpalaConfig(num_envs=3, normalize_advantages=False, **overrides)
    net = ActorCriticNetwork(2, "mlp", (16,), shared_torso=False)
    params = net.init(jax.random.PRNGKey(1), jnp.zeros((1, 4)))
    roll = _rollout()
    last_obs = jnp.asarray(np.random.default_rng(9).normal(size=(3, 4)), jnp.float32)
    return cfg, net, params, roll, last_obs


def test_on_policy_loss_equals_a2c_loss():
    """mu = pi (rho = 1), lambda = 1: V-trace targets are A2C's bootstrapped returns, so the
    IMPALA loss, its gradient and its parts equal A2C's (Mnih et al. 2016, Alg. S3)."""
    cfg, net, params, roll, last_obs = _setup()
    logits, _ = net.apply(params, roll.obs.reshape(-1, 4))
    behaviour = logits.reshape(6, 3, 2)

    def ours(p):
        return impala.impala_loss(net, p, roll, behaviour, last_obs, cfg)

    def a2c(p):
        return ac.actor_critic_loss(net, p, roll, last_obs, cfg)

    (l1, o1), g1 = jax.value_and_grad(ours, has_aux=True)(params)
    (l2, o2), g2 = jax.value_and_grad(a2c, has_aux=True)(params)
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    np.testing.assert_allclose(o1.value_loss, o2.value_loss, rtol=1e-5)
    np.testing.assert_allclose(o1.policy_loss, o2.policy_loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(o1.mean_abs_log_rho, 0.0, atol=1e-5)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_off_policy_ratios_and_no_correction():
    """With another behaviour policy the ratios are pi/mu (|log rho| > 0) and the loss moves;
    correction='none' sets every ratio to 1 and gives back the on-policy formula on that data."""
    cfg, net, params, roll, last_obs = _setup()
    behaviour = jnp.asarray(np.random.default_rng(3).normal(size=(6, 3, 2)), jnp.float32)
    logits, _ = net.apply(params, roll.obs.reshape(-1, 4))
    logp = jax.nn.log_softmax(logits.reshape(6, 3, 2))
    logmu = jax.nn.log_softmax(behaviour)
    a = roll.action[..., None]
    ratio = np.exp(np.take_along_axis(logp - logmu, a, -1)[..., 0])
    valid = np.asarray(roll.valid)
    _, out = impala.impala_loss(net, params, roll, behaviour, last_obs, cfg)
    np.testing.assert_allclose(out.mean_abs_log_rho, np.abs(np.log(ratio[valid])).mean(), rtol=1e-5)
    none_cfg = dataclasses.replace(cfg, correction="none")
    loss_none, out_none = impala.impala_loss(net, params, roll, behaviour, last_obs, none_cfg)
    loss_a2c, _ = ac.actor_critic_loss(net, params, roll, last_obs, cfg)
    # the ratios are still measured (the same data), only not used
    np.testing.assert_allclose(out_none.mean_abs_log_rho, out.mean_abs_log_rho)
    np.testing.assert_allclose(loss_none, loss_a2c, rtol=1e-5)
    assert abs(float(out.loss) - float(loss_none)) > 1e-4


def test_reset_steps_do_not_reach_the_loss():
    cfg, net, params, roll, last_obs = _setup()
    behaviour = jnp.zeros((6, 3, 2))
    grad = jax.grad(lambda p, r: impala.impala_loss(net, p, r, behaviour, last_obs, cfg)[0])
    base = grad(params, roll)
    poked = roll._replace(reward=roll.reward.at[2, 0].set(1e3).at[4, 1].set(-1e3))
    for x, y in zip(jax.tree.leaves(base), jax.tree.leaves(grad(params, poked)), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_artificial_policy_lag_acts_with_old_parameters():
    """policy_lag = 2: after u updates the actors' parameters are those of update u - 2."""
    cfg = impala.ImpalaConfig(
        architecture="jit", num_envs=2, rollout_length=4, policy_lag=2, total_steps=200
    )
    trainer = impala.make_impala(cfg)
    state = trainer.init_state()
    handle = trainer.vec_env.handle
    seen = [jax.tree.map(lambda x: x[0], state.ac.params)]
    for _ in range(4):
        handle, state, out = trainer.run_chunk(handle, state, True, 1)
        seen.append(jax.tree.map(lambda x: x[0], state.ac.params))
        acting = jax.tree.map(lambda h: h[0, 0], state.history)
        expected = seen[max(0, len(seen) - 1 - 2)]
        for a, b in zip(jax.tree.leaves(acting), jax.tree.leaves(expected), strict=True):
            np.testing.assert_array_equal(a, b)
    assert float(out.updates.mean_abs_log_rho[0, 0]) > 0  # lagged data is off-policy


@pytest.mark.parametrize(
    "field, value",
    [("learning_rate", -1.0), ("clip_rho_threshold", 0.0), ("lambda_", 1.5), ("correction", "x")],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        validate(dataclasses.replace(impala.ImpalaConfig(), **{field: value}))


@pytest.mark.parametrize(
    "field, value", [("num_seeds", 2), ("policy_lag", 3), ("learner_devices", 0)]
)
def test_threads_refuse_jit_only_options(field, value):
    with pytest.raises((ConfigError, ValueError), match=field):
        validate(dataclasses.replace(impala.ImpalaConfig(), **{field: value}))


def test_threads_account_steps_lags_and_resume(tmp_path):
    """2 actor threads: every update consumes batch_size trajectories, lags are >= 0 and
    bounded by the queue, the time split is recorded, and resume continues the counters."""
    cfg = impala.ImpalaConfig(
        actors=2,
        num_envs=4,
        rollout_length=5,
        batch_size=2,
        queue_size=2,
        total_steps=40 * 120,  # 40 env steps per update (5 steps x 4 envs x 2 trajectories)
        iterations_per_chunk=40,
    )
    kw = dict(progress=False, plot=False)
    part = runner.run(
        "impala", impala.make_impala, cfg, run_dir=str(tmp_path / "r"), max_chunks=2, **kw
    )
    assert part.interrupted
    assert int(part.state.num_updates) == 80 and int(part.state.env_steps) == 80 * 40
    lags = [row["policy_lag"] for row in part.metrics]
    assert all(0 <= lag <= cfg.queue_size + cfg.actors + cfg.batch_size for lag in lags)
    assert all(0 <= row["learner_wait_fraction"] <= 1 for row in part.metrics)
    rest = runner.run("impala", impala.make_impala, cfg, resume=str(tmp_path / "r"), **kw)
    assert int(rest.state.num_updates) == 120 and int(rest.state.env_steps) == 120 * 40
    assert len(rest.metrics) == 3


def test_an_actor_thread_error_reaches_the_learner():
    """An actor whose second rollout raises: the learner re-raises it from run_chunk instead
    of waiting for trajectories that will never come, and the other actor is stopped."""
    cfg = impala.ImpalaConfig(actors=2, num_envs=2, rollout_length=5, batch_size=2, queue_size=2)
    trainer = impala.make_impala(cfg)
    calls = fail_second_thread(trainer.actors, "rollout", 2, "actor 1 crashed")
    with pytest.raises(RuntimeError, match="actor 1 crashed"):
        trainer.run_chunk(None, trainer.init_state(), True, 1000)
    assert len(calls) == 2


def _best_mean20(returns):
    return np.convolve(np.asarray(returns), np.ones(20) / 20, "valid").max()


@pytest.mark.parametrize("architecture, steps", [("jit", 200_000), ("threads", 400_000)])
def test_learns_cartpole(tmp_path, architecture, steps):
    """Default hyperparameters on CartPole-v1: from near random (~22) to a 20-episode mean
    above 150 (threads: 220-285 in 3 runs of 400k steps; jit: above 150 by 200k)."""
    cfg = impala.ImpalaConfig(architecture=architecture, total_steps=steps)
    res = runner.run(
        "impala", impala.make_impala, cfg, run_dir=str(tmp_path / "r"), progress=False, plot=False
    )
    returns = res.episode_returns[0]
    assert np.mean(returns[:20]) < 60
    assert _best_mean20(returns) > 150, _best_mean20(returns)


BATCH = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh
    from rlax_zoo.agents import impala, actor_critic as ac
    from rlax_zoo.networks import ActorCriticNetwork
    t, b = 7, 16
    rng = np.random.default_rng(0)
    term = rng.random((t, b)) < 0.1
    trunc = (rng.random((t, b)) < 0.05) & ~term
    valid = np.ones((t, b), bool)
    valid[1:] = ~(term | trunc)[:-1]
    roll = ac.Transition(
        jnp.asarray(rng.normal(size=(t, b, 4)), jnp.float32),
        jnp.asarray(rng.integers(0, 3, (t, b)), jnp.int32),
        jnp.asarray(rng.normal(size=(t, b)), jnp.float32),
        jnp.asarray(term), jnp.asarray(trunc), jnp.asarray(valid),
    )
    batch = impala.Batch(
        roll, jnp.asarray(rng.normal(size=(t, b, 3)), jnp.float32),
        jnp.asarray(rng.normal(size=(b, 4)), jnp.float32),
    )
    cfg = impala.ImpalaConfig(normalize_advantages=False, max_grad_norm=0.5)
    net = ActorCriticNetwork(3, "mlp", (32, 32), shared_torso=False)
    opt = ac.make_optimizer(cfg, 100)
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, 4)))
    single = jax.jit(impala.make_learner_update(net, opt, cfg))
    """
)
SHARDED = (
    textwrap.dedent(
        """
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import jax
    assert jax.device_count() == 8, jax.devices()
    """
    )
    + BATCH
    + textwrap.dedent(
        """
    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharded = jax.jit(impala.make_learner_update(net, opt, cfg, mesh=mesh))
    p1, s1, o1 = single(params, opt.init(params), batch)
    p8, s8, o8 = sharded(params, opt.init(params), batch)
    for x, y in zip(jax.tree.leaves((p1, o1)), jax.tree.leaves((p8, o8)), strict=True):
        np.testing.assert_allclose(x, y, rtol=2e-5, atol=1e-6)
    leaves = zip(jax.tree.leaves(p1), jax.tree.leaves(params))
    moved = max(float(jnp.max(jnp.abs(x - y))) for x, y in leaves)
    assert moved > 1e-5, moved
    # advantages standardised over the whole batch, not over each device's share
    ncfg = impala.ImpalaConfig(normalize_advantages=True, max_grad_norm=0.5)
    p1n, _, o1n = jax.jit(impala.make_learner_update(net, opt, ncfg))(params, s1, batch)
    sharded_n = jax.jit(impala.make_learner_update(net, opt, ncfg, mesh=mesh))
    p8n, _, o8n = sharded_n(params, s1, batch)
    for x, y in zip(jax.tree.leaves((p1n, o1n)), jax.tree.leaves((p8n, o8n)), strict=True):
        np.testing.assert_allclose(x, y, rtol=2e-5, atol=1e-6)
    assert abs(float(o1n.policy_loss) - float(o1.policy_loss)) > 1e-3
    # the threaded trainer with its learner split over the 8 devices runs end to end
    tcfg = impala.ImpalaConfig(
        actors=1, num_envs=8, rollout_length=5, batch_size=1, learner_devices=-1, total_steps=400
    )
    trainer = impala.make_impala(tcfg)
    _, state, out = trainer.run_chunk(None, trainer.init_state(), True, 3)
    assert int(state.num_updates) == 3 and np.all(np.isfinite(out.updates["loss"]))
    print("ok", len(jax.devices()), float(o1.loss), float(o8.loss))
    """
    )
)


def test_sharded_learner_update_equals_single_device():
    """The data-parallel learner (shard_map over 8 host CPU devices, psum of gradients) takes
    the same step as the single-device learner on the same batch."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    out = subprocess.run(
        [sys.executable, "-c", SHARDED],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok 8"), out.stdout


DISTRIBUTED = (
    textwrap.dedent(
        """
    import sys
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    port, pid = sys.argv[1], int(sys.argv[2])
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=pid)
    assert jax.process_count() == 2 and jax.device_count() == 2
    """
    )
    + BATCH
    + textwrap.dedent(
        """
    p1, s1, o1 = single(params, opt.init(params), batch)  # the whole batch, this process only
    mesh = Mesh(np.array(jax.devices()), ("data",))
    # each process holds half of the trajectories (its actors' share) and builds the global batch
    local = jax.tree.map(lambda x: x[:, pid * 8 : (pid + 1) * 8], batch._replace(last_obs=None))
    local = local._replace(last_obs=batch.last_obs[pid * 8 : (pid + 1) * 8])
    global_batch = impala.global_batch_from_process_local(local, mesh)
    sharded = jax.jit(impala.make_learner_update(net, opt, cfg, mesh=mesh))
    p2, s2, o2 = sharded(params, opt.init(params), global_batch)
    for x, y in zip(jax.tree.leaves((p1, o1)), jax.tree.leaves((p2, o2)), strict=True):
        np.testing.assert_allclose(x, np.asarray(y.addressable_data(0)), rtol=2e-5, atol=1e-6)
    print("ok", pid, float(o1.loss))
    """
    )
)


def test_learner_update_across_two_processes_equals_single_device():
    """jax.distributed with two local CPU processes (gloo collectives), one device each, each
    holding half of the batch: the sharded update equals one process's full-batch update."""
    _two_processes(DISTRIBUTED)


MULTI_PROCESS_RUN = textwrap.dedent(
    """
    import sys
    from rlax_zoo import runner
    from rlax_zoo.agents import impala
    port, pid, phase, root = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    cfg = impala.ImpalaConfig(
        env_id="CartPole-v1", actors=1, num_envs=4, batch_size=2, rollout_length=5,
        total_steps=400, iterations_per_chunk=5, num_processes=2, process_id=pid,
        coordinator_address=f"127.0.0.1:{port}",
    )
    impala.initialize_distributed(cfg)
    kw = dict(progress=False, plot=False)
    if phase == "start":  # one of the two chunks, then process 0 stops as on Ctrl-C: process
        # 1 must stop with it (or both would hang: it in the next update, 0 in the checkpoint)
        kw["max_chunks"] = 1 if pid == 0 else None
        r = runner.run("impala", impala.make_impala, cfg, run_dir=root + "/run", **kw)
    else:
        r = runner.run("impala", impala.make_impala, cfg, resume=sys.argv[5], **kw)
    assert r.interrupted == (phase == "start"), r
    print("ok", pid, r.interrupted, r.run_dir)
    """
)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _two_processes(script: str, *args) -> list[str]:
    """Run `script` as processes 0 and 1 of a jax.distributed job; their stdouts."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(port), str(pid), *[a[pid] for a in args]],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for pid in range(2)
    ]
    try:
        outs = [p.communicate(timeout=300) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:  # a hung collective: do not leave the processes behind
            p.kill()
        raise
    for pid, (p, (out, err)) in enumerate(zip(procs, outs, strict=True)):
        assert p.returncode == 0, err[-3000:]
        assert f"\nok {pid} " in "\n" + out, out
    return [out for out, _ in outs]


def test_two_process_run_shares_one_learner_and_resumes(tmp_path):
    """A threads run over two jax.distributed processes: each process's actors play their own
    envs (different episodes), the learner update is one global step (the same loss in both
    metrics.csv, row by row), process 0's folder holds the checkpoints, a stop in one process
    stops both, and the interrupted run resumes from them in both processes."""
    root = str(tmp_path)
    _two_processes(MULTI_PROCESS_RUN, ["start"] * 2, [root] * 2)
    dirs = [os.path.join(root, "run"), os.path.join(root, "run-process1")]
    assert os.path.isdir(os.path.join(dirs[0], "checkpoints"))
    assert not os.path.exists(os.path.join(dirs[1], "checkpoints"))
    _two_processes(MULTI_PROCESS_RUN, ["resume"] * 2, [root] * 2, dirs)
    rows = [runner.read_csv(os.path.join(d, "metrics.csv")) for d in dirs]
    assert [[int(r["chunk"]) for r in rs] for rs in rows] == [[0, 1], [0, 1]]
    for key in ("loss", "policy_loss", "value_loss", "entropy"):
        np.testing.assert_allclose(
            [float(r[key]) for r in rows[0]], [float(r[key]) for r in rows[1]], rtol=1e-6
        )
    episodes = [runner.read_csv(os.path.join(d, "episodes.csv")) for d in dirs]
    assert [float(r["return"]) for r in episodes[0]] != [float(r["return"]) for r in episodes[1]]


def test_gradient_accumulation_over_chunks_is_the_same_update():
    """learner_chunks = 3 (one trajectory per slice) takes the step of the unsliced batch,
    also when the advantages are standardised (over the whole batch, not over each slice)."""
    cfg, net, params, roll, last_obs = _setup()
    behaviour = jnp.asarray(np.random.default_rng(4).normal(size=(6, 3, 2)), jnp.float32)
    batch = impala.Batch(roll, behaviour, last_obs)
    opt = ac.make_optimizer(cfg, 10)
    losses = []
    for normalize in (False, True):
        results = []
        for chunks in (1, 3):
            update = impala.make_learner_update(
                net,
                opt,
                dataclasses.replace(cfg, learner_chunks=chunks, normalize_advantages=normalize),
            )
            results.append(jax.jit(update)(params, opt.init(params), batch))
        (p1, _, o1), (p3, _, o3) = results
        for x, y in zip(jax.tree.leaves((p1, o1)), jax.tree.leaves((p3, o3)), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
        losses.append(float(o1.policy_loss))
    # the standardised loss is a different number, and equals the unsliced formula's
    assert abs(losses[0] - losses[1]) > 1e-3
    ncfg = dataclasses.replace(cfg, normalize_advantages=True)
    _, out = impala.impala_loss(net, params, roll, behaviour, last_obs, ncfg)
    np.testing.assert_allclose(out.policy_loss, losses[1], rtol=1e-5, atol=1e-6)
