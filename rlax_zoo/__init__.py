"""rlax-zoo: reinforcement-learning primitives, agents and benchmarks in JAX.

The primitives below follow rlax's conventions (single stream, `_tm1`/`_t` names, batch with
`jax.vmap`, TD errors out) and can be called inside any jitted code.
"""

from rlax_zoo.multistep import discounted_returns, lambda_returns, n_step_bootstrapped_returns
from rlax_zoo.replay import (
    ReplayBuffer,
    ReplaySample,
    ReplayState,
    prioritized_replay,
    uniform_replay,
)
from rlax_zoo.value_learning import (
    double_q_learning,
    expected_sarsa,
    huber_loss,
    q_learning,
    sarsa,
)

__version__ = "0.1.0"

__all__ = [
    "ReplayBuffer",
    "ReplaySample",
    "ReplayState",
    "discounted_returns",
    "double_q_learning",
    "expected_sarsa",
    "huber_loss",
    "lambda_returns",
    "n_step_bootstrapped_returns",
    "prioritized_replay",
    "q_learning",
    "sarsa",
    "uniform_replay",
]
