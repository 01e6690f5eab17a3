"""rlax-zoo: reinforcement-learning primitives, agents and benchmarks in JAX.

The primitives below follow rlax's conventions (single stream, `_tm1`/`_t` names, batch with
`jax.vmap`, TD errors out) and can be called inside any jitted code.
"""

from rlax_zoo.multistep import discounted_returns, lambda_returns, n_step_bootstrapped_returns
from rlax_zoo.policy_gradient import (
    advantage_actor_critic_loss,
    baseline_loss,
    categorical_policy,
    distribution_entropy_loss,
    distribution_policy_gradient_loss,
    entropy_loss,
    gaussian_policy,
    n_step_advantages,
    policy_gradient_loss,
    reinforce_loss,
)
from rlax_zoo.replay import (
    ReplayBuffer,
    ReplaySample,
    ReplayState,
    prioritized_replay,
    uniform_replay,
)
from rlax_zoo.shaping import potential_based_shaping, shaped_reward
from rlax_zoo.value_learning import (
    double_q_learning,
    expected_sarsa,
    huber_loss,
    q_learning,
    sarsa,
)
from rlax_zoo.vtrace import VTraceOutput, vtrace, vtrace_td_error_and_advantage

__version__ = "0.1.0"

__all__ = [
    "ReplayBuffer",
    "ReplaySample",
    "ReplayState",
    "advantage_actor_critic_loss",
    "baseline_loss",
    "categorical_policy",
    "discounted_returns",
    "distribution_entropy_loss",
    "distribution_policy_gradient_loss",
    "double_q_learning",
    "entropy_loss",
    "expected_sarsa",
    "gaussian_policy",
    "huber_loss",
    "lambda_returns",
    "n_step_advantages",
    "n_step_bootstrapped_returns",
    "policy_gradient_loss",
    "potential_based_shaping",
    "prioritized_replay",
    "q_learning",
    "reinforce_loss",
    "sarsa",
    "shaped_reward",
    "uniform_replay",
    "VTraceOutput",
    "vtrace",
    "vtrace_td_error_and_advantage",
]
