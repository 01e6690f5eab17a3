"""Networks (flax.linen): MLP, Nature-CNN and IMPALA torsos, Q and dueling heads, an actor-critic.

Vendorable: imports only jax and flax.

Papers:
  * Mnih et al. 2015, "Human-level control through deep RL" (the Nature CNN torso).
  * Espeholt et al. 2018, "IMPALA", Figure 3 (the shallow and the deep residual torsos).
  * Wang et al. 2016, "Dueling Network Architectures for Deep RL", eq. (8) (max aggregator)
    and eq. (9) (mean aggregator).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

AGGREGATORS = ("mean", "max")
TORSOS = ("mlp", "nature_cnn", "impala_shallow", "impala_deep")


class MLP(nn.Module):
    """Fully connected torso: [B, ...] -> [B, hidden_sizes[-1]], ReLU after every layer.

    Inputs are flattened after the batch axis, so any observation shape works.
    """

    hidden_sizes: Sequence[int] = (64, 64)

    @nn.compact
    def __call__(self, x):
        x = x.reshape((x.shape[0], -1)).astype(jnp.float32)
        for size in self.hidden_sizes:
            x = nn.relu(nn.Dense(size)(x))
        return x


class NatureCNN(nn.Module):
    """Nature DQN torso (Mnih et al. 2015): conv 32x8x8/4, 64x4x4/2, 64x3x3/1, dense 512.

    Takes frames [B, C, H, W] as envpool emits them (uint8 in 0..255, stacked on C) and
    returns [B, 512]. Pixels are scaled to [0, 1] inside.
    """

    dense_size: int = 512

    @nn.compact
    def __call__(self, x):
        x = _frames_to_nhwc(x)
        x = nn.relu(nn.Conv(32, (8, 8), strides=(4, 4), padding="VALID")(x))
        x = nn.relu(nn.Conv(64, (4, 4), strides=(2, 2), padding="VALID")(x))
        x = nn.relu(nn.Conv(64, (3, 3), strides=(1, 1), padding="VALID")(x))
        x = x.reshape((x.shape[0], -1))
        return nn.relu(nn.Dense(self.dense_size)(x))


def _frames_to_nhwc(x):
    """Envpool frames [B, C, H, W] uint8 0..255 -> [B, H, W, C] float32 in [0, 1]."""
    return jnp.transpose(x, (0, 2, 3, 1)).astype(jnp.float32) / 255.0


class ImpalaShallowCNN(nn.Module):
    """IMPALA's shallow torso (Espeholt et al. 2018, Figure 3 left, without the LSTM):
    conv 16x8x8/4, conv 32x4x4/2, dense 256, ReLU after each. [B, C, H, W] -> [B, 256]."""

    dense_size: int = 256

    @nn.compact
    def __call__(self, x):
        x = _frames_to_nhwc(x)
        x = nn.relu(nn.Conv(16, (8, 8), strides=(4, 4), padding="VALID")(x))
        x = nn.relu(nn.Conv(32, (4, 4), strides=(2, 2), padding="VALID")(x))
        return nn.relu(nn.Dense(self.dense_size)(x.reshape((x.shape[0], -1))))


class ImpalaResNet(nn.Module):
    """IMPALA's deep residual torso (Espeholt et al. 2018, Figure 3 right, without the LSTM).

    Three sections of (conv 3x3/1, max-pool 3x3/2 "SAME", two residual blocks
    [ReLU, conv 3x3, ReLU, conv 3x3] + skip) with 16, 32, 32 channels, then ReLU, dense 256,
    ReLU. [B, C, H, W] uint8 frames -> [B, 256].
    """

    channels: Sequence[int] = (16, 32, 32)
    dense_size: int = 256

    @nn.compact
    def __call__(self, x):
        x = _frames_to_nhwc(x)
        for channels in self.channels:
            x = nn.Conv(channels, (3, 3), padding="SAME")(x)
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
            for _ in range(2):
                y = nn.Conv(channels, (3, 3), padding="SAME")(nn.relu(x))
                x = x + nn.Conv(channels, (3, 3), padding="SAME")(nn.relu(y))
        x = nn.relu(x).reshape((x.shape[0], -1))
        return nn.relu(nn.Dense(self.dense_size)(x))


def make_torso(torso: str, hidden_sizes: Sequence[int] = (64, 64), name: str | None = None):
    """The torso module named `torso` (one of `TORSOS`)."""
    if torso == "mlp":
        return MLP(hidden_sizes, name=name)
    modules = {
        "nature_cnn": NatureCNN,
        "impala_shallow": ImpalaShallowCNN,
        "impala_deep": ImpalaResNet,
    }
    if torso not in modules:
        raise ValueError(f"torso must be one of {TORSOS}, got {torso!r}")
    return modules[torso](name=name)


def dueling_aggregate(value, advantages, aggregator: str = "mean"):
    """Combine V and A into Q (Wang et al. 2016, eq. 8 for "max", eq. 9 for "mean").

    max:  Q(s, a) = V(s) + A(s, a) - max_a' A(s, a')
    mean: Q(s, a) = V(s) + A(s, a) - 1/|A| sum_a' A(s, a')

    Args:
      value: [B, 1] (or [B]) state values V(s).
      advantages: [B, num_actions] advantages A(s, a).
      aggregator: "mean" or "max".
    Returns:
      [B, num_actions] action values.
    """
    if aggregator not in AGGREGATORS:
        raise ValueError(f"aggregator must be one of {AGGREGATORS}, got {aggregator!r}")
    value = value.reshape((advantages.shape[0], 1))
    if aggregator == "mean":
        baseline = jnp.mean(advantages, axis=-1, keepdims=True)
    else:
        baseline = jnp.max(advantages, axis=-1, keepdims=True)
    return value + advantages - baseline


class QHead(nn.Module):
    """Single-stream Q head: features [B, F] -> Q [B, num_actions] (optionally one hidden layer)."""

    num_actions: int
    hidden_size: int = 0

    @nn.compact
    def __call__(self, features):
        x = features
        if self.hidden_size:
            x = nn.relu(nn.Dense(self.hidden_size)(x))
        return nn.Dense(self.num_actions)(x)


class DuelingHead(nn.Module):
    """Dueling head (Wang et al. 2016, Fig. 1 and eqs. 8-9): features [B, F] -> Q [B, A].

    Two streams, each with an optional hidden layer: V(s) with one output and A(s, .) with
    num_actions outputs, combined by `dueling_aggregate`.
    """

    num_actions: int
    hidden_size: int = 0
    aggregator: str = "mean"

    @nn.compact
    def __call__(self, features):
        value_x, adv_x = features, features
        if self.hidden_size:
            value_x = nn.relu(nn.Dense(self.hidden_size, name="value_hidden")(features))
            adv_x = nn.relu(nn.Dense(self.hidden_size, name="advantage_hidden")(features))
        value = nn.Dense(1, name="value")(value_x)
        advantages = nn.Dense(self.num_actions, name="advantage")(adv_x)
        return dueling_aggregate(value, advantages, self.aggregator)


class QNetwork(nn.Module):
    """Torso + (dueling or single-stream) head: observations [B, ...] -> Q values [B, A].

    torso: one of `TORSOS`: "mlp" for vector observations, a CNN for Atari frames [B, C, H, W].
    """

    num_actions: int
    torso: str = "mlp"
    hidden_sizes: Sequence[int] = (64, 64)
    head_hidden_size: int = 0
    dueling: bool = False
    aggregator: str = "mean"

    @nn.compact
    def __call__(self, obs):
        features = make_torso(self.torso, self.hidden_sizes)(obs)
        if self.dueling:
            return DuelingHead(self.num_actions, self.head_hidden_size, self.aggregator)(features)
        return QHead(self.num_actions, self.head_hidden_size)(features)


class ActorCriticNetwork(nn.Module):
    """Policy logits and state value: observations [B, ...] -> (logits [B, A], value [B]).

    The policy pi(a|s) = softmax(logits) and the baseline / critic V(s) of the actor-critic
    methods (Sutton et al. 2000; Mnih et al. 2016, Algorithm S3). `shared_torso` gives one
    torso with two linear heads (A3C's network); otherwise the policy and the value each get
    their own torso. torso: one of `TORSOS` ("mlp" for vector observations, a CNN for frames).
    """

    num_actions: int
    torso: str = "mlp"
    hidden_sizes: Sequence[int] = (64, 64)
    shared_torso: bool = True

    def _torso(self, name: str):
        return make_torso(self.torso, self.hidden_sizes, name)

    @nn.compact
    def __call__(self, obs):
        policy_features = self._torso("torso" if self.shared_torso else "policy_torso")(obs)
        value_features = policy_features if self.shared_torso else self._torso("value_torso")(obs)
        # a near-uniform initial policy (small orthogonal init, as CleanRL and PureJaxRL do)
        logits = nn.Dense(
            self.num_actions, kernel_init=nn.initializers.orthogonal(0.01), name="policy"
        )(policy_features)
        value = nn.Dense(1, name="value")(value_features)[..., 0]
        return logits, value


class PolicyValueNetwork(nn.Module):
    """AlphaGo Zero's two-headed network at board-game scale: board planes [B, H, W, C] ->
    (policy logits [B, A], value [B] in (-1, 1)).

    Silver et al. 2017, Methods, "Neural network architecture": a convolutional block, residual
    blocks (conv 3x3, batch norm, ReLU, conv 3x3, batch norm, skip, ReLU), a policy head
    (conv 1x1 with 2 filters, ReLU, dense A) and a value head (conv 1x1 with 1 filter, ReLU,
    dense, ReLU, dense 1, tanh). Layer norm over the channels stands in for batch norm in the
    tower (the params stay one pytree with no batch statistics); the heads' 1x1 convolutions
    have no norm (a layer norm over 1 or 2 channels would erase them).
    """

    num_actions: int
    channels: int = 64
    num_blocks: int = 2
    value_hidden: int = 64

    @nn.compact
    def __call__(self, planes):
        conv = lambda c, k=3: nn.Conv(c, (k, k), padding="SAME")  # noqa: E731
        x = nn.relu(nn.LayerNorm()(conv(self.channels)(planes.astype(jnp.float32))))
        for _ in range(self.num_blocks):
            y = nn.relu(nn.LayerNorm()(conv(self.channels)(x)))
            x = nn.relu(x + nn.LayerNorm()(conv(self.channels)(y)))
        flat = lambda h: h.reshape((h.shape[0], -1))  # noqa: E731
        p = nn.relu(conv(2, 1)(x))
        logits = nn.Dense(self.num_actions, name="policy")(flat(p))
        v = nn.relu(conv(1, 1)(x))
        v = nn.relu(nn.Dense(self.value_hidden)(flat(v)))
        value = jnp.tanh(nn.Dense(1, name="value")(v)[..., 0])
        return logits, value
