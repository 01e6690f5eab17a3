"""Dueling vs single-stream Q networks on corridor policy evaluation (Wang et al. 2016, Fig. 3).

Reproduces Section 4.1 of Wang et al. 2016, "Dueling Network Architectures for Deep RL":

* Environment: `rlax_zoo.envs.corridor` -- two vertical sections of 10 cells joined by a
  horizontal one of 50 (a step/Z shape), start at the bottom left, goal (reward 10, terminal)
  at the top right, a dead end with reward 1 (terminal) just above the top of the left
  section, discount 0.99. Actions up/down/left/right/no-op; the 10- and 20-action variants
  add 5 and 15 extra no-ops. The paper does not give rewards, discount or where the small
  reward is: those are our choices (see the corridor module docstring).
* Policy: pi = epsilon-greedy around Q* (epsilon = 0.001, random action uniform over all
  actions, extra no-ops included). Q^pi is computed exactly by solving the linear Bellman
  system in NumPy.
* Learning: TD(0) with the Expected SARSA target of Section 4.1,
      y = r + gamma * sum_a' pi(a'|s') Q(s', a'; theta)      (stop-gradient, 0 at terminals),
  loss 1/2 (y - Q(s, a; theta))^2 averaged over a minibatch, Adam. `--target-period K > 1`
  bootstraps from a copy of theta refreshed every K updates (the theta^- of eq. 4) instead.
  Minibatches of 32 independent transitions (s, a, r, s'). `--sampling policy` (default, the
  paper's "behavior policy pi"): s from the exact on-policy state distribution of pi (expected
  visits per episode from the start, `corridor.state_visitation`; nearly uniform over the 69
  non-terminal path states) and a ~ pi(.|s), i.e. an i.i.d. replay of pi's own experience.
  Non-greedy actions then have probability epsilon / A each and are almost never trained on,
  so their Q values come only from generalisation. `--sampling uniform`: s uniform over the
  non-terminal states and a uniform over all actions (every (s, a) in the error is trained
  on, but learning is off-policy, bootstrapping with pi's expectation).
* Inputs: one-hot state index (`--encoding onehot`, default; 71 inputs) or the (x, y) grid
  coordinates scaled to [0, 1] (`--encoding xy`). The paper does not say which.
* Networks (flax.linen, `rlax_zoo.networks.QNetwork`):
    single: Dense 50 - ReLU - Dense 50 - ReLU - Dense A      ("three layers, 50 units")
    dueling: Dense 50 - ReLU, then a value stream Dense 25 - ReLU - Dense 1 and an advantage
             stream Dense 25 - ReLU - Dense A, combined with the mean aggregator (eq. 9).
* Metric: squared error SE = sum_{s non-terminal, a} (Q(s, a; theta) - Q^pi(s, a))^2, logged
  every `--log-every` updates; mean over seeds (geometric mean in the plot, log-log axes as
  in Fig. 3). Everything for one (actions, architecture) is a single jitted function:
  `lax.scan` over updates inside `vmap` over seeds.

Run:  python benchmarks/dueling_corridor.py [--updates 20000 --seeds 5]
Writes benchmarks/results/dueling_corridor.png and prints a markdown table of final SE.

Observed with the defaults (20k updates, 5 seeds, CPU): single/dueling final SE ratio about
1.1, 2.1, 2.3 for 5, 10, 20 actions (the paper's trend). The SE on the greedy pairs is the
same for both networks; the whole gap is in the rarely sampled non-greedy actions, where the
dueling value stream carries V(s) over. With `--encoding xy` the ratios were about 2, 3.5, 15.
With `--sampling uniform` (off-policy) both networks are unstable and the dueling one worse
(SE rising again after ~1e4 updates, even with Adam 1e-4).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rlax_zoo.envs import corridor
from rlax_zoo.networks import QNetwork

ACTION_COUNTS = (5, 10, 20)
ARCHITECTURES = ("single", "dueling")


def make_network(num_actions: int, architecture: str) -> QNetwork:
    if architecture == "single":
        return QNetwork(num_actions, torso="mlp", hidden_sizes=(50, 50))
    if architecture == "dueling":
        return QNetwork(
            num_actions,
            torso="mlp",
            hidden_sizes=(50,),
            head_hidden_size=25,
            dueling=True,
            aggregator="mean",
        )
    raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")


def encode_states(mdp: corridor.CorridorMDP, encoding: str) -> np.ndarray:
    """[S, F] network inputs for every state."""
    num_states = mdp.next_state.shape[0]
    if encoding == "onehot":
        return np.eye(num_states, dtype=np.float32)
    if encoding == "xy":
        coords = mdp.coords.astype(np.float32)
        return coords / coords.max(axis=0, keepdims=True)
    raise ValueError(f"encoding must be 'onehot' or 'xy', got {encoding!r}")


def make_train(num_actions: int, architecture: str, args: argparse.Namespace):
    """Returns train(key) -> SE curves [num_logs + 1, 2] (all pairs, greedy pairs) for one seed."""
    mdp, policy, q_true = corridor.policy_evaluation_problem(num_actions, epsilon=args.epsilon)
    live = np.flatnonzero(~mdp.terminal)
    inputs = jnp.asarray(encode_states(mdp, args.encoding))
    next_state = jnp.asarray(mdp.next_state)
    reward = jnp.asarray(mdp.reward, jnp.float32)
    terminal = jnp.asarray(mdp.terminal)
    policy_j = jnp.asarray(policy, jnp.float32)
    live_j = jnp.asarray(live)
    q_true_live = jnp.asarray(q_true[live], jnp.float32)
    visits = corridor.state_visitation(mdp, policy)[live]
    visits_cdf = jnp.asarray(np.cumsum(visits / visits.sum()), jnp.float32)
    policy_cdf = jnp.asarray(np.cumsum(policy, axis=-1), jnp.float32)
    gamma = mdp.discount
    net = make_network(num_actions, architecture)
    optimizer = optax.adam(args.lr) if args.optimizer == "adam" else optax.sgd(args.lr)
    num_logs = args.updates // args.log_every

    greedy_mask = jnp.asarray(policy[live] == policy[live].max(axis=-1, keepdims=True))

    def squared_error(params):
        """[2]: SE over all (s, a) and over the greedy (s, a*(s)) pairs only."""
        err2 = (net.apply(params, inputs[live_j]) - q_true_live) ** 2
        return jnp.stack([jnp.sum(err2), jnp.sum(jnp.where(greedy_mask, err2, 0.0))])

    def loss_fn(params, target_params, s, a):
        s_next = next_state[s, a]
        if args.target_period <= 1:  # one forward pass for s and s' (fewer, larger ops)
            q_both = net.apply(params, inputs[jnp.concatenate([s, s_next])])
            q_s, q_next = q_both[: s.shape[0]], q_both[s.shape[0] :]
        else:
            q_s, q_next = net.apply(params, inputs[s]), net.apply(target_params, inputs[s_next])
        v_next = jnp.sum(policy_j[s_next] * q_next, axis=-1)  # Expected SARSA, [B]
        target = reward[s, a] + gamma * jnp.where(terminal[s_next], 0.0, v_next)
        q_sa = jnp.take_along_axis(q_s, a[:, None], axis=-1)[:, 0]
        return 0.5 * jnp.mean((jax.lax.stop_gradient(target) - q_sa) ** 2)

    def update(carry, key):
        params, target_params, opt_state, step = carry
        key_s, key_a = jax.random.split(key)
        if args.sampling == "uniform":
            s = live_j[jax.random.randint(key_s, (args.batch_size,), 0, live_j.shape[0])]
            a = jax.random.randint(key_a, (args.batch_size,), 0, num_actions)
        else:
            # Inverse-CDF sampling: one uniform per draw (Gumbel-max would draw one per class).
            u_s = jax.random.uniform(key_s, (args.batch_size,))
            s = live_j[jnp.minimum(jnp.sum(u_s[:, None] >= visits_cdf, -1), live_j.shape[0] - 1)]
            u_a = jax.random.uniform(key_a, (args.batch_size, 1))
            a = jnp.minimum(jnp.sum(u_a >= policy_cdf[s], -1), num_actions - 1)
        grads = jax.grad(loss_fn)(params, target_params, s, a)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        step = step + 1
        target_params = optax.periodic_update(
            params, target_params, step, max(args.target_period, 1)
        )
        return (params, target_params, opt_state, step), None

    def chunk(carry, key):
        carry, _ = jax.lax.scan(update, carry, jax.random.split(key, args.log_every))
        return carry, squared_error(carry[0])

    def train(key):
        key_init, key_train = jax.random.split(key)
        params = net.init(key_init, inputs[:1])
        carry = (params, params, optimizer.init(params), jnp.zeros((), jnp.int32))
        _, curve = jax.lax.scan(chunk, carry, jax.random.split(key_train, num_logs))
        return jnp.concatenate([squared_error(params)[None], curve])

    return train


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=20_000, help="gradient updates per run")
    parser.add_argument("--seeds", type=int, default=5, help="seeds run in parallel (vmap)")
    parser.add_argument("--seed", type=int, default=0, help="base PRNG seed")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    parser.add_argument("--epsilon", type=float, default=0.001)
    parser.add_argument("--encoding", choices=("onehot", "xy"), default="onehot")
    parser.add_argument("--sampling", choices=("policy", "uniform"), default="policy")
    parser.add_argument("--target-period", type=int, default=1, help="1: bootstrap from theta")
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--actions", type=int, nargs="+", default=list(ACTION_COUNTS))
    parser.add_argument(
        "--out", default=os.path.join(os.path.dirname(__file__), "results", "dueling_corridor.png")
    )
    args = parser.parse_args(argv)
    if args.updates < args.log_every or args.updates % args.log_every:
        parser.error("--updates must be a positive multiple of --log-every")
    return args


def plot(curves: dict, args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.arange(args.updates // args.log_every + 1) * args.log_every
    fig, axes = plt.subplots(
        1, len(args.actions), figsize=(4.2 * len(args.actions), 3.8), squeeze=False, sharey=True
    )
    for ax, num_actions in zip(axes[0], args.actions, strict=True):
        for arch, color in zip(ARCHITECTURES, ("tab:blue", "tab:red"), strict=True):
            label = {"single": "Single", "dueling": "Duel"}[arch]
            se = curves[num_actions, arch][:, 1:, 0]  # [seeds, T], all (s, a)
            se_greedy = curves[num_actions, arch][:, 1:, 1]
            ax.plot(steps[1:], np.exp(np.log(se).mean(0)), color=color, label=label)
            ax.fill_between(steps[1:], se.min(0), se.max(0), color=color, alpha=0.15, lw=0)
            ax.plot(
                steps[1:],
                np.exp(np.log(se_greedy).mean(0)),
                color=color,
                ls=":",
                lw=1,
                label=f"{label}, greedy (s, a*) only",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{num_actions} actions")
        ax.set_xlabel("No. iterations")
        ax.grid(True, which="both", alpha=0.3)
    axes[0, 0].set_ylabel("SE (geo. mean over seeds; band: min-max)")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(
        f"Corridor policy evaluation: {args.encoding} inputs, {args.sampling} sampling, "
        f"{args.optimizer} {args.lr:g}, batch {args.batch_size}, {args.seeds} seeds",
        fontsize=10,
    )
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"saved {args.out}")


def _fmt(x: np.ndarray) -> str:
    return f"{x.mean():.3g} ({x.min():.3g}-{x.max():.3g})"


def main(argv=None) -> None:
    args = parse_args(argv)
    cmd_args = argv if argv is not None else sys.argv[1:]
    print("command: python benchmarks/dueling_corridor.py " + " ".join(cmd_args))
    print(
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"nproc={os.cpu_count()}, python {platform.python_version()}, jax {jax.__version__}, "
        f"backend {jax.default_backend()}"
    )
    start = time.perf_counter()
    curves = {}
    for num_actions in args.actions:
        for arch in ARCHITECTURES:
            t0 = time.perf_counter()
            train = jax.jit(jax.vmap(make_train(num_actions, arch, args)))
            keys = jax.random.split(jax.random.key(args.seed), args.seeds)
            curves[num_actions, arch] = np.asarray(jax.block_until_ready(train(keys)))
            print(
                f"  {num_actions:2d} actions, {arch:7s}: final SE "
                f"{curves[num_actions, arch][:, -1, 0].mean():.4g} "
                f"({time.perf_counter() - t0:.1f} s incl. compile)",
                flush=True,
            )
    print(f"wall time: {time.perf_counter() - start:.1f} s (compile included)\n")

    print(
        f"SE after {args.updates} updates, mean (min-max) over {args.seeds} seeds; "
        "'greedy' = SE over the (s, a*(s)) pairs only:\n"
    )
    print(
        "| actions | SE single | SE dueling | single / dueling | greedy single | greedy dueling |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for num_actions in args.actions:
        single = curves[num_actions, "single"][:, -1]
        duel = curves[num_actions, "dueling"][:, -1]
        ratio = single[:, 0].mean() / duel[:, 0].mean()
        print(
            f"| {num_actions} | {_fmt(single[:, 0])} | {_fmt(duel[:, 0])} | {ratio:.2f} | "
            f"{_fmt(single[:, 1])} | {_fmt(duel[:, 1])} |"
        )
    plot(curves, args)


if __name__ == "__main__":
    main()
