"""What every method's trainer hands the runner after a chunk (see `rlax_zoo.runner`)."""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class ChunkSummary(NamedTuple):
    """Per-seed results of one chunk of training.

    episodes: per seed, an [E, 3] array of finished episodes (env-step offset within the
      chunk, undiscounted return, length), in the order they ended.
    scalars: metric name -> [S] array (e.g. mean loss of the chunk per seed).
    """

    episodes: list[np.ndarray]
    scalars: dict[str, np.ndarray]


def episodes_per_seed(done, episode_return, episode_length) -> list[np.ndarray]:
    """Finished episodes of a chunk, per seed, from per-step arrays [..., S, K].

    The leading axes (e.g. [iterations, steps per iteration]) are flattened in time order;
    one vector step is K env steps per seed. Returns, per seed, an [E, 3] array of (env-step
    offset within the chunk at the end of the vector step, return, length).
    """
    done = np.asarray(done)
    s, k = done.shape[-2:]
    done = done.reshape(-1, s, k)
    rets = np.asarray(episode_return).reshape(done.shape)
    lens = np.asarray(episode_length).reshape(done.shape)
    offsets = np.broadcast_to((np.arange(done.shape[0]).reshape(-1, 1, 1) + 1) * k, done.shape)
    return [
        np.stack([offsets[:, i][done[:, i]], rets[:, i][done[:, i]], lens[:, i][done[:, i]]], -1)
        for i in range(s)
    ]


def python_loop_for(loop: str, obs_shape) -> bool:
    """Whether a chunk's iterations run as Python calls ('python') or one lax.scan ('scan').

    'auto' picks Python for image observations: XLA:CPU runs convolution gradients about 10x
    slower inside a rolled while loop than outside one (measured: Nature-CNN Adam step 0.72 s
    in lax.scan, 0.07 s unrolled), and scan otherwise (one dispatch per chunk).
    """
    return loop == "python" or (loop == "auto" and len(obs_shape) == 3)


def make_chunk_runner(iteration, python_loop: bool):
    """Run `num_iterations` of `iteration(handle, state, learn) -> (handle, state, out)`.

    Returns `run(handle, state, learn, num_iterations) -> (handle, state, outs)` with outs'
    leaves stacked on a leading [num_iterations] axis: one jitted `lax.scan` (state donated),
    or, with `python_loop`, one jitted iteration per Python call.
    """

    @partial(jax.jit, static_argnums=(2, 3), donate_argnums=(1,))
    def scan_chunk(handle, state, learn: bool, num_iterations: int):
        def body(carry, _):
            handle, state, out = iteration(*carry, learn)
            return (handle, state), out

        (handle, state), outs = jax.lax.scan(body, (handle, state), None, num_iterations)
        return handle, state, outs

    one_iteration = jax.jit(iteration, static_argnums=(2,), donate_argnums=(1,))

    def python_chunk(handle, state, learn: bool, num_iterations: int):
        outs = []
        for _ in range(num_iterations):
            handle, state, out = one_iteration(handle, state, learn)
            outs.append(out)
        return handle, state, jax.tree.map(lambda *xs: jnp.stack(xs), *outs)

    return python_chunk if python_loop else scan_chunk


def chunk_schedule(
    total_steps: int, steps_per_iteration: int, iterations_per_chunk: int, warmup_steps: int = 0
) -> list[tuple[bool, int]]:
    """A run's chunks (learn?, iterations): warm-up collection, then learning.

    Each phase is split into equal chunks of at most `iterations_per_chunk` iterations (one
    compiled shape per phase), so total_steps is rounded up by less than one iteration per
    chunk.
    """
    total = -(-total_steps // steps_per_iteration)
    warmup = min(total, -(-warmup_steps // steps_per_iteration))
    chunks = []
    for learn, count in ((False, warmup), (True, total - warmup)):
        if count > 0:
            num_chunks = -(-count // iterations_per_chunk)
            chunks += [(learn, -(-count // num_chunks))] * num_chunks
    return chunks


@dataclasses.dataclass
class VmappedTrainer:
    """The jitted loop of a method whose agent is vmapped over seeds (`rlax_zoo.runner`'s
    trainer interface): env handle + state in, chunks out.

    config needs seed, num_seeds, num_envs, total_steps, iterations_per_chunk and
    steps_per_iteration (and learning_starts for a warm-up phase); agent.init(key, first_obs
    [K, ...]) builds one seed's state; run_chunk returns an output with `.steps` (done,
    episode_return, episode_length: [I, R, S, K]) and `.updates` (a NamedTuple of [..., S]).
    """

    config: Any
    vec_env: Any
    agent: Any
    run_chunk: Any  # (handle, state, learn: static bool, iterations) -> (handle, state, out)

    def init_state(self):
        cfg = self.config
        keys = jax.random.split(jax.random.PRNGKey(cfg.seed), cfg.num_seeds)
        first_obs = self.vec_env.first_obs.reshape(
            (cfg.num_seeds, cfg.num_envs) + self.vec_env.obs_shape
        )
        return jax.jit(jax.vmap(self.agent.init))(keys, jnp.asarray(first_obs))

    @property
    def steps_per_iteration(self) -> int:
        return self.config.steps_per_iteration

    def schedule(self) -> list[tuple[bool, int]]:
        cfg = self.config
        return chunk_schedule(
            cfg.total_steps,
            cfg.steps_per_iteration,
            cfg.iterations_per_chunk,
            getattr(cfg, "learning_starts", 0),
        )

    def summarize(self, out) -> ChunkSummary:
        """Finished episodes per seed and the chunk's mean of every update output per seed."""
        episodes = episodes_per_seed(
            out.steps.done, out.steps.episode_return, out.steps.episode_length
        )
        scalars = {
            name: np.asarray(value).reshape(-1, len(episodes)).mean(0)
            for name, value in out.updates._asdict().items()
        }
        return ChunkSummary(episodes, scalars)


def make_vector_step(agent, vec_env, num_seeds: int, num_envs: int):
    """The scan body of one vector step for every seed at once.

    act (vmapped over seeds) -> one envpool step of the whole [S * K] batch (envpool's xla
    handle cannot be vmapped) -> observe (vmapped), which also gets the environment's own
    reward (`info["env_reward"]` under a reward-shaping wrapper) for the logged returns.
    Returns `body((handle, state), _) -> ((handle, state), (observe's outputs after the new
    state, as a tuple; actions [S * K] int32))`.
    """
    s, k = num_seeds, num_envs

    def vector_step(carry, _):
        handle, state = carry
        state, actions = jax.vmap(agent.act)(state)  # [S, K]
        handle, (obs, reward, term, trunc, info) = vec_env.step(handle, actions.reshape(s * k))
        split = lambda x: x.reshape((s, k) + x.shape[1:])  # noqa: E731
        state, *outputs = jax.vmap(agent.observe)(
            state,
            actions,
            split(obs),
            split(reward),
            split(term),
            split(trunc),
            split(info.get("env_reward", reward)),
        )
        return (handle, state), (tuple(outputs), actions.reshape(s * k))

    return vector_step
