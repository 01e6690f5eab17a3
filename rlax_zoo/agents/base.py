"""What every method's trainer hands the runner after a chunk (see `rlax_zoo.runner`)."""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

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
        np.stack([offsets[:, i][m], rets[:, i][m], lens[:, i][m]], -1)
        for i, m in ((i, done[:, i]) for i in range(s))
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
