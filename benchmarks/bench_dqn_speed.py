"""Training speed of our DQN on CartPole-v1 vs purejaxrl's DQN and envpool's raw step.

Everything runs in ONE process and is measured interleaved: after one warm-up call per
measurement (which compiles it), every repeat times each measurement once, in turn, and we
report the median (and min-max) over repeats. Each timed call ends with
`jax.block_until_ready`.

Measurements (env steps per second, `--num-envs` environments, `--steps` env steps per call):

* ours: `Trainer.run_chunk(handle, state, learn=True, n)` of `rlax_zoo.agents.dqn` (the
  learning phase: each iteration is one vector step of all envs then one gradient update),
  after a collection chunk has filled the buffer with `learning_starts` steps. Two configs:
    - "matched": purejaxrl's DQN hyperparameters (see PUREJAXRL_CONFIG below): plain DQN
      (no double Q, no dueling, uniform replay, 1-step), MLP 120-84, buffer 10k, batch 128,
      one update per vector step of 10 envs (TRAINING_INTERVAL = 10 env steps), hard target
      copy every 500 env steps (= 50 updates), MSE loss, Adam(2.5e-4, eps 1e-8), no gradient
      clipping (max_grad_norm = 0).
    - "default": our default algorithm (double Q + dueling + proportional prioritized replay +
      3-step returns, huber loss, Adam eps 1e-5, grad clip 10) with the same sizes.
* peer: purejaxrl's `make_train(config)` (github.com/luchris429/purejaxrl, purejaxrl/dqn.py),
  loaded from `--purejaxrl-file` (never part of this repo; skipped with a message if absent).
  Its whole training run is one jitted function, so we time two lengths, T0 = 20k steps
  (10k collection + 10k learning) and T0 + `--steps`, and report `--steps / (t1 - t0)`
  (t = median over repeats; min-max from the per-repeat pairs): the learning-phase
  throughput without compile, init or collection. Two compatibility edits
  are applied to its source in memory (idempotent, printed): `import wandb` is dropped (only
  its `main()` uses it) and `jax.tree_map` becomes `jax.tree.map` (removed in jax 0.10). It
  needs gymnax 0.0.x (gymnax >= 1.0 changed `env.step` to return 6 values; tested with
  gymnax 0.0.9 and flashbax 0.1.3).
* second peer: CleanRL's `dqn_jax.py` (github.com/vwxyzjn/cleanrl; never part of this repo;
  skipped if `--cleanrl-file` or `--cleanrl-python` is absent), the other peer the issue
  names. It is a Python loop over one gymnasium env with a jitted update every 10 env steps,
  so it needs its own Python (its dependencies: gymnasium 0.29, torch for its replay buffer,
  tyro, tensorboard; tested with jax 0.10.2, flax 0.12.8, optax 0.2.8, torch 2.13 CPU). Each
  repeat runs it once per placement (under `taskset` on one CPU, and on all CPUs) as a
  subprocess; see `CleanRLMeasurement`. The bar's ratio uses the faster placement. Ours is
  also run in its layout ("matched, 1 env": one env, an update every 10 env steps).
* ceiling: envpool's raw `env.xla()` step alone in a jitted `lax.scan` with fixed int32 actions.
* breakdown (per config): the loop rebuilt from `make_agent` (vmapped over a seed axis of size
  1, as `make_dqn` does) adding one piece at a time: env only -> + act (network forward,
  epsilon-greedy) -> + observe (n-step window, replay add, episode stats) -> + update (sample,
  loss/grad, Adam, set_priorities, target). Also the update's pieces alone, per update, on a
  filled buffer: sample; sample + set_priorities; full update.

Caveats: the peer steps gymnax's CartPole (pure JAX, fused by XLA into the training loop),
ours steps envpool's C++ CartPole through an XLA custom call (a host thread pool); they are
different env implementations with different episode statistics. The peer's buffer stores
each transition once (flashbax flat buffer, (s, s') pairs by index); ours stores obs and
next_obs (needed for n-step and truncation). The Python driver of `rlax_zoo.runner` (CSV rows,
action log, checkpoints) is not timed here: this is `run_chunk` alone.

Run:  python benchmarks/bench_dqn_speed.py --purejaxrl-file /tmp/purejaxrl_dqn.py \
          --cleanrl-file /tmp/cleanrl/cleanrl/dqn_jax.py \
          --cleanrl-python /tmp/cleanrl-venv/bin/python
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import datetime
import json
import math
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import types
import warnings
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.dqn_cartpole import (  # noqa: E402
    add_xla_cpu_threads_flag,
    apply_xla_cpu_threads,
    machine_line,
)
from rlax_zoo.agents.dqn import DQNConfig, make_agent, make_dqn  # noqa: E402
from rlax_zoo.envs.envpool_env import make_vec_env  # noqa: E402

ENV_ID = "CartPole-v1"

# purejaxrl/dqn.py main() (commit 31756b1, Sep 2024). Checked against the file when present.
PUREJAXRL_CONFIG = {
    "NUM_ENVS": 10,
    "BUFFER_SIZE": 10000,
    "BUFFER_BATCH_SIZE": 128,
    "TOTAL_TIMESTEPS": 5e5,
    "EPSILON_START": 1.0,
    "EPSILON_FINISH": 0.05,
    "EPSILON_ANNEAL_TIME": 25e4,
    "TARGET_UPDATE_INTERVAL": 500,
    "LR": 2.5e-4,
    "LEARNING_STARTS": 10000,
    "TRAINING_INTERVAL": 10,
    "LR_LINEAR_DECAY": False,
    "GAMMA": 0.99,
    "TAU": 1.0,
    "ENV_NAME": "CartPole-v1",
}
PUREJAXRL_HIDDEN = (120, 84)  # its QNetwork: Dense 120 - ReLU - Dense 84 - ReLU - Dense A
PEER_T0 = 20_000  # the peer's shorter run: 10k collection + 10k learning steps


# ----------------------------------------------------------------------------- configs


def sizes(num_envs: int) -> dict:
    """What both of our configs share with the peer (one update per vector step)."""
    p = PUREJAXRL_CONFIG
    return dict(
        env_id=ENV_ID,
        num_envs=num_envs,
        buffer_size=p["BUFFER_SIZE"],
        batch_size=p["BUFFER_BATCH_SIZE"],
        hidden_sizes=PUREJAXRL_HIDDEN,
        rollout_length=1,
        updates_per_rollout=1,
        target_period=max(1, p["TARGET_UPDATE_INTERVAL"] // num_envs),
        learning_starts=p["LEARNING_STARTS"],
        total_steps=int(p["TOTAL_TIMESTEPS"]),
        discount=p["GAMMA"],
    )


def matched_config(num_envs: int) -> DQNConfig:
    p = PUREJAXRL_CONFIG
    return DQNConfig(
        **sizes(num_envs),
        double_q=False,
        dueling=False,
        replay="uniform",
        n_step=1,
        loss="mse",
        learning_rate=p["LR"],
        adam_eps=1e-8,
        max_grad_norm=0.0,
        epsilon_start=p["EPSILON_START"],
        epsilon_end=p["EPSILON_FINISH"],
        exploration_fraction=p["EPSILON_ANNEAL_TIME"] / p["TOTAL_TIMESTEPS"],
    )


def default_config(num_envs: int) -> DQNConfig:
    return DQNConfig(**sizes(num_envs))


def peer_config(num_envs: int, total: int) -> dict:
    cfg = dict(PUREJAXRL_CONFIG, NUM_ENVS=num_envs, TOTAL_TIMESTEPS=total)
    # One update per vector step, as in the original (10 envs, interval 10 env steps).
    cfg["TRAINING_INTERVAL"] = num_envs
    return cfg


# ----------------------------------------------------------------------------- measurements


class Measurement:
    """A named timed call; `call()` runs once and returns the seconds to report."""

    def __init__(self, name: str, steps: int, call: Callable[[], float]):
        self.name, self.steps, self._call = name, steps, call
        self.times: list[float] = []

    def warm_up(self) -> None:
        self._call()

    def time_once(self) -> None:
        self.times.append(self._call())

    def rates(self) -> list[float]:
        return [self.steps / t for t in self.times]

    def median_time(self) -> float:
        return statistics.median(self.times)

    def median_rate(self) -> float:
        return statistics.median(self.rates())


def timed(fn: Callable[[], object]) -> Callable[[], float]:
    def call() -> float:
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        return time.perf_counter() - t0

    return call


def ours_full_loop(cfg: DQNConfig, steps: int) -> tuple[Callable[[], float], int]:
    """Trainer.run_chunk(learn=True) after a collection chunk of learning_starts steps."""
    trainer = make_dqn(cfg)
    spi = trainer.steps_per_iteration
    state, handle = trainer.init_state(), trainer.vec_env.handle
    handle, state, _ = trainer.run_chunk(handle, state, False, -(-cfg.learning_starts // spi))
    # Block: with an envpool chunk still in flight, dispatching the next jitted call (here
    # another env's init) hung this process (jax 0.10.2 CPU, envpool 1.2.5, 2 cores).
    jax.block_until_ready((handle, state))
    iters = max(1, steps // spi)
    carry = [handle, state]

    def fn():
        handle, state, out = trainer.run_chunk(carry[0], carry[1], True, iters)
        carry[:] = [handle, state]
        return handle, state, out

    return timed(fn), iters * spi


def raw_env(num_envs: int, steps: int, seed: int) -> tuple[Callable[[], float], int]:
    """envpool's env.xla() step alone, fixed int32 actions, in a jitted lax.scan."""
    env = make_vec_env(ENV_ID, num_envs, seed)
    actions = jnp.asarray(np.arange(num_envs) % env.num_actions, jnp.int32)
    n = max(1, steps // num_envs)

    @jax.jit
    def run(handle):
        def body(carry, _):
            h, acc = carry
            h, (_obs, reward, *_rest) = env.step(h, actions)
            return (h, acc + jnp.sum(reward)), None

        (handle, acc), _ = jax.lax.scan(body, (handle, jnp.zeros((), jnp.float32)), None, n)
        return handle, acc

    carry = [env.handle]

    def fn():
        carry[0], acc = run(carry[0])
        return carry[0], acc

    return timed(fn), n * num_envs


ENV, ACT, OBSERVE, UPDATE = range(4)
LEVEL_NAMES = {
    ENV: "env only",
    ACT: "+ act (forward, eps-greedy)",
    OBSERVE: "+ observe (n-step, replay add)",
    UPDATE: "+ update (sample, loss/grad, priorities, target)",
}


def _agent_setup(cfg: DQNConfig):
    env = make_vec_env(cfg.env_id, cfg.num_envs, cfg.seed)
    agent = make_agent(cfg, env.obs_shape, env.obs_dtype, env.num_actions)
    keys = jax.random.PRNGKey(cfg.seed)[None]
    first = jnp.asarray(env.first_obs)[None]
    state = jax.jit(jax.vmap(agent.init))(keys, first)
    return env, agent, state


def _make_loop(cfg: DQNConfig, env, agent, level: int):
    """The rebuilt loop up to `level`: jitted (handle, state, n) -> (handle, state)."""
    k = cfg.num_envs
    fixed = jnp.asarray(np.arange(k) % env.num_actions, jnp.int32)[None]

    def vector_step(carry, _):
        handle, state = carry
        if level >= ACT:
            state, actions = jax.vmap(agent.act)(state)
        else:
            actions = fixed
        handle, (obs, reward, term, trunc, _info) = env.step(handle, actions.reshape(k))
        if level >= OBSERVE:
            state, _ = jax.vmap(agent.observe)(
                state, actions, obs[None], reward[None], term[None], trunc[None]
            )
        else:
            state = state._replace(
                obs=obs[None].astype(state.obs.dtype), env_steps=state.env_steps + k
            )
        return (handle, state), None

    def iteration(carry, _):
        carry, _ = jax.lax.scan(vector_step, carry, None, cfg.rollout_length)
        if level >= UPDATE:
            handle, state = carry
            state, _ = jax.lax.scan(
                lambda s, _: jax.vmap(agent.update)(s), state, None, cfg.updates_per_rollout
            )
            carry = (handle, state)
        return carry, None

    @partial(jax.jit, static_argnums=(2,), donate_argnums=(1,))
    def run(handle, state, n):
        carry, _ = jax.lax.scan(iteration, (handle, state), None, n)
        return carry

    return run


def breakdown_loop(cfg: DQNConfig, level: int, steps: int) -> tuple[Callable[[], float], int]:
    env, agent, state = _agent_setup(cfg)
    spi = cfg.steps_per_iteration
    handle = env.handle
    if level >= UPDATE:  # fill the buffer first, as the trainer's collection phase does
        collect = _make_loop(cfg, env, agent, OBSERVE)
        handle, state = jax.block_until_ready(
            collect(handle, state, -(-cfg.learning_starts // spi))
        )
    run = _make_loop(cfg, env, agent, level)
    iters = max(1, steps // spi)
    carry = [handle, state]

    def fn():
        carry[:] = run(carry[0], carry[1], iters)
        return carry

    return timed(fn), iters * spi


UPDATE_PIECES = ("sample", "sample + set_priorities", "full update")


def update_piece(cfg: DQNConfig, piece: str, num_updates: int) -> Callable[[], float]:
    """`num_updates` updates' worth of one piece, on a buffer filled by collection."""
    env, agent, state = _agent_setup(cfg)
    collect = _make_loop(cfg, env, agent, OBSERVE)
    _, state = jax.block_until_ready(
        collect(env.handle, state, -(-cfg.learning_starts // cfg.steps_per_iteration))
    )
    buffer = agent.buffer

    def sample_only(carry, _):
        st, acc = carry
        key, sk = jax.random.split(st.key[0])
        sample = buffer.sample(jax.tree.map(lambda x: x[0], st.replay), sk, 0.5)
        acc = acc + sum(jnp.sum(x.astype(jnp.float32)) for x in jax.tree.leaves(sample))
        return (st._replace(key=key[None]), acc), None

    def sample_set(carry, _):
        st, acc = carry
        key, sk, tk = jax.random.split(st.key[0], 3)
        replay = jax.tree.map(lambda x: x[0], st.replay)
        sample = buffer.sample(replay, sk, 0.5)
        td = jax.random.normal(tk, (cfg.batch_size,)) + jnp.sum(sample.weights)
        replay = buffer.set_priorities(replay, sample.indices, td)
        replay = jax.tree.map(lambda x: x[None], replay)
        acc = acc + sum(jnp.sum(x.astype(jnp.float32)) for x in jax.tree.leaves(sample))
        return (st._replace(key=key[None], replay=replay), acc), None

    def full(carry, _):
        st, acc = carry
        st, out = jax.vmap(agent.update)(st)
        return (st, acc + out.loss[0]), None

    body = {"sample": sample_only, "sample + set_priorities": sample_set, "full update": full}

    @partial(jax.jit, donate_argnums=(0,))
    def run(st):
        return jax.lax.scan(body[piece], (st, jnp.zeros((), jnp.float32)), None, num_updates)[0]

    carry = [state]

    def fn():
        carry[0], acc = run(carry[0])
        return acc

    return timed(fn)


# ----------------------------------------------------------------------------- the peer


def load_peer(path: str):
    """Import purejaxrl's dqn.py from `path` with two in-memory compatibility edits."""
    with open(path) as f:
        src = f.read()
    edits = [
        ("import wandb\n", "wandb = None  # bench edit: only main() uses wandb\n"),
        ("jax.tree_map(", "jax.tree.map("),
    ]
    applied = []
    for old, new in edits:
        if old in src:
            src = src.replace(old, new)
            applied.append(f"{old.strip()!r} -> {new.split('  #')[0].strip()!r}")
    module = types.ModuleType("purejaxrl_dqn")
    module.__file__ = path
    sys.modules[module.__name__] = module  # chex/dataclasses look the module up by name
    exec(compile(src, path, "exec"), module.__dict__)  # noqa: S102 - the user's own file
    return module, applied, _peer_main_config(src)


def _peer_main_config(src: str) -> dict | None:
    """The literal `config = {...}` of the peer's main(), if it can be read."""
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.FunctionDef) and node.name == "main":
            for stmt in node.body:
                if (
                    isinstance(stmt, ast.Assign)
                    and getattr(stmt.targets[0], "id", None) == "config"
                    and isinstance(stmt.value, ast.Dict)
                ):
                    try:
                        return ast.literal_eval(stmt.value)
                    except ValueError:
                        return None
    return None


class PeerMeasurement(Measurement):
    """Slope of two run lengths: steps / (t(T0 + steps) - t(T0)).

    Each repeat times both lengths (long first). The median rate uses the difference of the
    two medians (robust to one stalled call); min-max are the per-repeat paired slopes.
    """

    def __init__(self, steps: int, short_call, long_call):
        super().__init__("peer", steps, lambda: (long_call(), short_call()))
        self.pairs: list[tuple[float, float]] = []

    def time_once(self) -> None:
        self.pairs.append(self._call())
        self.times.append(self.pairs[-1][0] - self.pairs[-1][1])

    def median_time(self) -> float:
        return statistics.median(p[0] for p in self.pairs) - statistics.median(
            p[1] for p in self.pairs
        )

    def median_rate(self) -> float:
        return self.steps / self.median_time()


def peer_measurement(module, num_envs: int, steps: int) -> PeerMeasurement:
    steps = max(1, steps // num_envs) * num_envs
    short = jax.jit(module.make_train(peer_config(num_envs, PEER_T0)))
    long = jax.jit(module.make_train(peer_config(num_envs, PEER_T0 + steps)))
    rng = jax.random.PRNGKey(0)
    return PeerMeasurement(steps, timed(lambda: short(rng)), timed(lambda: long(rng)))


# ----------------------------------------------------------------------------- CleanRL

# cleanrl/dqn_jax.py's defaults (commit fe8d8a0, Apr 2026): the same hyperparameters as
# purejaxrl's, with ONE gymnasium env and an update every 10 env steps.
CLEANRL_DEFAULTS = {
    "total_timesteps": 500_000,
    "exploration_fraction": 0.5,
    "learning_starts": 10_000,
}
CLEANRL_SKIP = 2_000  # learning-phase steps left out of the rate (compiling the update)

# Its SPS line is `global_step / wall time since start`, an integer; the one local edit adds
# the step and a precise clock to it, so the rate over a window can be read exactly.
CLEANRL_EDITS = [
    (
        'print("SPS:", int(global_step / (time.time() - start_time)))',
        'print("SPS:", int(global_step / (time.time() - start_time)), "AT", global_step, '
        "time.perf_counter(), flush=True)",
    ),
]

# Runs in CleanRL's own Python: applies CLEANRL_EDITS in memory, then runs the file as main.
CLEANRL_DRIVER = """
import json, sys
path, edits = sys.argv[1], json.loads(sys.argv[2])
sys.argv = [path] + sys.argv[3:]
src = open(path).read()
for old, new in edits:
    assert old in src, f"edit target not found in {path}: {old!r}"
    src = src.replace(old, new)
exec(compile(src, path, "exec"), {"__name__": "__main__", "__file__": path})
"""


def cleanrl_rate(stdout: str, start: int) -> float:
    """Env steps/s between the first and last `SPS ... AT step clock` line with step >= start."""
    points = [
        (int(m.group(1)), float(m.group(2)))
        for m in re.finditer(r"^SPS: \d+ AT (\d+) ([0-9.]+)$", stdout, re.MULTILINE)
        if int(m.group(1)) >= start
    ]
    if len(points) < 2:
        raise RuntimeError(
            f"CleanRL printed {len(points)} usable SPS lines; its output:\n{stdout[-2000:]}"
        )
    (g0, t0), (g1, t1) = points[0], points[-1]
    return (g1 - g0) / (t1 - t0)


class CleanRLMeasurement(Measurement):
    """CleanRL's dqn_jax.py, run in its own Python (gymnasium, torch, tyro, tensorboard).

    Each call runs the file for `learning_starts + CLEANRL_SKIP + steps` env steps with
    `--exploration-fraction` scaled so that epsilon falls exactly as in its default 500k-step
    run, and reads the learning-phase rate from its SPS prints (the steps after the first
    `CLEANRL_SKIP` learning steps). `one_core` runs it under `taskset` on one CPU, which gives
    its jitted update a one-thread XLA pool as `--xla-cpu-threads 1` gives ours.
    """

    def __init__(self, name, python, path, steps, seed, one_core):
        super().__init__(name, steps, self._run)
        start = CLEANRL_DEFAULTS["learning_starts"] + CLEANRL_SKIP
        total = start + steps
        fraction = CLEANRL_DEFAULTS["exploration_fraction"] * CLEANRL_DEFAULTS["total_timesteps"]
        self.start = start
        self.cmd = [python, "-c", CLEANRL_DRIVER, path, json.dumps(CLEANRL_EDITS)]
        self.cmd += [f"--seed={seed}", f"--total-timesteps={total}"]
        self.cmd += [f"--exploration-fraction={fraction / total}"]
        if one_core:
            self.cmd = ["taskset", "-c", str(min(os.sched_getaffinity(0)))] + self.cmd
        # cleanrl_utils (its replay buffer) sits next to the cleanrl/ folder.
        root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
        self.env = dict(os.environ, PYTHONPATH=root)

    def _run(self) -> float:
        with tempfile.TemporaryDirectory() as cwd:  # it writes runs/ (tensorboard) here
            out = subprocess.run(
                self.cmd, cwd=cwd, env=self.env, capture_output=True, text=True, check=False
            )
        if out.returncode:
            raise RuntimeError(f"CleanRL exited with {out.returncode}:\n{out.stderr[-3000:]}")
        return self.steps / cleanrl_rate(out.stdout, self.start)


# ----------------------------------------------------------------------------- reporting


def header(args) -> list[str]:
    cmd = " ".join(shlex.quote(a) for a in [os.path.basename(sys.executable), *sys.argv])
    return [
        f"command: {cmd}",
        f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"machine: {machine_line()}",
        f"nproc: {os.cpu_count()} (affinity {len(os.sched_getaffinity(0))}), platform: "
        f"{platform.platform()}, backend {jax.default_backend()}",
        f"repeats: {args.repeats}, steps per timed call: {args.steps}, num envs: {args.num_envs}",
    ]


def fmt_rate(m: Measurement) -> str:
    r = m.rates()
    return f"{m.median_rate():,.0f} ({min(r):,.0f} to {max(r):,.0f})"


def ratio(a: float | None, b: float | None) -> str:
    return "n/a" if not a or not b else f"{a / b:.2f}x"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (median)")
    parser.add_argument("--steps", type=int, default=50_000, help="env steps per timed call")
    parser.add_argument("--num-envs", type=int, default=10, help="parallel envs (peer: 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--purejaxrl-file",
        default="/tmp/purejaxrl_dqn.py",
        help="path to purejaxrl/dqn.py (github.com/luchris429/purejaxrl); skipped if absent",
    )
    parser.add_argument(
        "--cleanrl-file",
        default="/tmp/cleanrl/cleanrl/dqn_jax.py",
        help="path to cleanrl/dqn_jax.py inside a CleanRL checkout (github.com/vwxyzjn/cleanrl, "
        "for its cleanrl_utils); skipped if absent",
    )
    parser.add_argument(
        "--cleanrl-python",
        default="/tmp/cleanrl-venv/bin/python",
        help="a Python with CleanRL's dependencies (jax, flax, optax, gymnasium 0.29, torch, "
        "tyro, tensorboard)",
    )
    parser.add_argument("--no-breakdown", action="store_true", help="skip the breakdown")
    add_xla_cpu_threads_flag(parser)
    args = parser.parse_args(argv)
    apply_xla_cpu_threads(args)
    if args.repeats < 1 or args.steps < 1 or args.num_envs < 1:
        parser.error("--repeats, --steps and --num-envs must be >= 1")
    warnings.filterwarnings("ignore", message=".*int64.*")  # gymnax asks for int64 dtypes

    lines = header(args)
    print("\n".join(lines), flush=True)
    if args.num_envs != PUREJAXRL_CONFIG["NUM_ENVS"]:
        print(
            f"note: --num-envs {args.num_envs} differs from purejaxrl's 10; both sides still do "
            "one update per vector step (peer TRAINING_INTERVAL set to --num-envs)."
        )

    configs = {
        "matched": matched_config(args.num_envs),
        "default": default_config(args.num_envs),
    }
    labels = {
        "matched": "ours, matched to purejaxrl (plain DQN, uniform replay, 1-step)",
        "default": "ours, default (double + dueling + prioritized, 3-step)",
    }
    measurements: dict[str, Measurement] = {}
    breakdown_configs = dict(configs)  # the breakdown is for the --num-envs loops only

    def add(key: str, call: Callable[[], float], steps: int) -> None:
        measurements[key] = Measurement(key, steps, call)

    print("building and compiling ...", flush=True)
    t_build = time.perf_counter()
    for name, cfg in configs.items():
        call, steps = ours_full_loop(cfg, args.steps)
        add(f"full/{name}", call, steps)
    call, steps = raw_env(args.num_envs, args.steps, args.seed)
    add("ceiling", call, steps)

    peer_note = None
    if os.path.exists(args.purejaxrl_file):
        try:
            module, applied, file_config = load_peer(args.purejaxrl_file)
            print(f"peer: {args.purejaxrl_file}; in-memory edits: {applied or 'none needed'}")
            if file_config is not None:
                diff = {
                    k: (v, file_config.get(k))
                    for k, v in PUREJAXRL_CONFIG.items()
                    if file_config.get(k) != v
                }
                if diff:
                    print(f"WARNING: the peer file's main() config differs from ours: {diff}")
            measurements["peer"] = peer_measurement(module, args.num_envs, args.steps)
        except Exception as e:  # noqa: BLE001 - report and go on without the peer
            peer_note = f"peer skipped: could not load/run {args.purejaxrl_file}: {e!r}"
    else:
        peer_note = (
            f"peer skipped: {args.purejaxrl_file} does not exist (export purejaxrl/dqn.py from "
            "github.com/luchris429/purejaxrl there and `pip install 'gymnax<1' flashbax`)."
        )
    if peer_note:
        print(peer_note)

    cleanrl_note = None
    if os.path.exists(args.cleanrl_file) and os.path.exists(args.cleanrl_python):
        # CleanRL's layout: one env, one update per 10 env steps, target copy every 50 updates.
        configs["matched1"] = dataclasses.replace(
            matched_config(1), rollout_length=10, target_period=50
        )
        labels["matched1"] = "ours, matched, 1 env like CleanRL (an update per 10 env steps)"
        call, steps = ours_full_loop(configs["matched1"], args.steps)
        add("full/matched1", call, steps)
        for one_core in (True, False):
            name = "cleanrl/one-core" if one_core else "cleanrl/all-cores"
            measurements[name] = CleanRLMeasurement(
                name, args.cleanrl_python, args.cleanrl_file, args.steps, args.seed, one_core
            )
        print(f"CleanRL: {args.cleanrl_file} run by {args.cleanrl_python}; edit: SPS line + clock")
    else:
        cleanrl_note = (
            f"CleanRL skipped: {args.cleanrl_file} or {args.cleanrl_python} does not exist "
            "(export github.com/vwxyzjn/cleanrl there and make a venv with its dependencies)."
        )
        print(cleanrl_note)

    if not args.no_breakdown:
        for name, cfg in breakdown_configs.items():
            for level in (ENV, ACT, OBSERVE, UPDATE):
                call, steps = breakdown_loop(cfg, level, args.steps)
                add(f"level/{name}/{level}", call, steps)
            num_updates = max(1, args.steps // cfg.steps_per_iteration) * cfg.updates_per_rollout
            for piece in UPDATE_PIECES:
                add(f"piece/{name}/{piece}", update_piece(cfg, piece, num_updates), num_updates)

    for m in measurements.values():
        m.warm_up()  # compiles; the peer's warm-up compiles both lengths
    print(f"built and compiled in {time.perf_counter() - t_build:.0f} s; timing ...", flush=True)

    for r in range(args.repeats):  # interleaved: one call of each measurement per repeat
        t_rep = time.perf_counter()
        for m in measurements.values():
            m.time_once()
        print(f"  repeat {r + 1}/{args.repeats}: {time.perf_counter() - t_rep:.1f} s", flush=True)

    peer_rate = measurements["peer"].median_rate() if "peer" in measurements else None
    cleanrl = [m for k, m in measurements.items() if k.startswith("cleanrl/")]
    cleanrl_rate = max((m.median_rate() for m in cleanrl), default=None)
    ceiling_rate = measurements["ceiling"].median_rate()
    print()
    print(
        f"### Training loop, {ENV_ID}, {args.num_envs} envs, learning phase "
        "(env steps/s, median over repeats)\n"
    )
    print(
        "| configuration | env steps/s, median (min-max) | vs purejaxrl | vs CleanRL (faster) |"
        " vs raw-env ceiling |"
    )
    print("|---|---|---|---|---|")
    rows = [(labels[n], measurements[f"full/{n}"]) for n in configs]
    if "peer" in measurements:
        rows.append(("purejaxrl DQN (gymnax CartPole, flashbax)", measurements["peer"]))
    for m in cleanrl:
        where = "taskset one core" if m.name.endswith("one-core") else "all cores"
        rows.append((f"CleanRL dqn_jax (gymnasium CartPole, 1 env), {where}", m))
    rows.append(("ceiling: envpool env.xla() step only, fixed actions", measurements["ceiling"]))
    for label, m in rows:
        rate = m.median_rate()
        print(
            f"| {label} | {fmt_rate(m)} | {ratio(rate, peer_rate)} | {ratio(rate, cleanrl_rate)} |"
            f" {ratio(rate, ceiling_rate)} |"
        )
    for note in (peer_note, cleanrl_note):
        if note:
            print(f"\n{note}")

    if not args.no_breakdown:
        for name, cfg in breakdown_configs.items():
            full = measurements[f"full/{name}"]
            t_full = full.median_time() / full.steps  # seconds per env step
            print(f"\n### Where the time goes: {labels[name]}\n")
            print(
                "| variant (cumulative) | env steps/s, median (min-max) | us per 1k env steps |"
                " share of full loop | increment |"
            )
            print("|---|---|---|---|---|")
            prev = 0.0
            for level in (ENV, ACT, OBSERVE, UPDATE):
                m = measurements[f"level/{name}/{level}"]
                t = m.median_time() / m.steps
                print(
                    f"| {LEVEL_NAMES[level]} | {fmt_rate(m)} | {t * 1e9:,.0f} |"
                    f" {t / t_full:.0%} | {(t - prev) / t_full:+.0%} |"
                )
                prev = t
            print(
                f"| full loop (Trainer.run_chunk, learn=True) | {fmt_rate(full)} |"
                f" {t_full * 1e9:,.0f} | 100% | |"
            )
            per_iter = t_full * cfg.steps_per_iteration
            print(
                f"\nUpdate pieces alone (no env), {cfg.updates_per_rollout} update per "
                f"{cfg.steps_per_iteration} env steps:\n"
            )
            print("| piece | us per update, median (min-max) | share of full loop |")
            print("|---|---|---|")
            for piece in UPDATE_PIECES:
                m = measurements[f"piece/{name}/{piece}"]
                per = [t / m.steps * 1e6 for t in m.times]
                med = statistics.median(per)
                share = med * 1e-6 * cfg.updates_per_rollout / per_iter
                print(f"| {piece} | {med:,.1f} ({min(per):,.1f}-{max(per):,.1f}) | {share:.0%} |")
    if args.repeats < 5:
        print(f"\nnote: only {args.repeats} repeats (use >= 5 for reported numbers)")
    if not math.isfinite(ceiling_rate):
        print("note: the ceiling measurement is not finite")


if __name__ == "__main__":
    main()
