"""What a trained IMPALA policy does: action frequencies, and how much pi and V vary over states.

Restores the newest checkpoint of an `rlax-zoo train impala` run folder, samples actions from
pi in fresh envs of the run's environment (its own env options: frame stack, episodic life,
...), and prints the action frequencies, the mean of pi, the standard deviation of pi and of
V over the visited states, and the reward per episode. A policy whose pi barely changes from
state to state while V does has learned an action bias, not behaviour (session 9: Breakout's
0.42-per-life plateau).

    python benchmarks/impala_policy_stats.py --run runs/impala-breakout-rmsprop-s9 \
        [--envs 8] [--steps 2000] [--seed 12345]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from rlax_zoo import config as config_lib  # noqa: E402
from rlax_zoo.agents import impala  # noqa: E402
from rlax_zoo.checkpointing import Checkpointer  # noqa: E402
from rlax_zoo.envs.envpool_env import make_env_for  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="an `rlax-zoo train impala` run folder")
    p.add_argument("--envs", type=int, default=8)
    p.add_argument("--steps", type=int, default=2000, help="steps per env")
    p.add_argument("--seed", type=int, default=12345)
    args = p.parse_args()
    if args.envs < 1 or args.steps < 1:
        p.error(f"--envs and --steps must be >= 1, got {args.envs} and {args.steps}")
    print("command: python " + " ".join(sys.argv))
    with open(os.path.join(args.run, "config.json")) as f:
        cfg = config_lib.from_json(impala.ImpalaConfig, f.read())
    template = impala.make_impala(cfg).init_state()
    restored, meta, _ = Checkpointer(os.path.join(args.run, "checkpoints")).restore(
        lambda meta: {"state": template}
    )
    params = jax.tree.map(jnp.asarray, restored["state"].params)
    env = make_env_for(cfg, args.envs, args.seed)
    network = impala.make_network(cfg, env.obs_shape, env.num_actions)

    @jax.jit
    def rollout(params, handle, obs, key):
        def body(carry, k):
            handle, obs = carry
            logits, value = network.apply(params, obs)
            action = jax.random.categorical(k, logits).astype(jnp.int32)
            handle, (obs, reward, term, trunc, _) = env.step(handle, action)
            return (handle, obs), (action, reward, term | trunc, jax.nn.softmax(logits), value)

        keys = jax.random.split(key, args.steps)
        return jax.lax.scan(body, (handle, obs), keys)[1]

    key = jax.random.PRNGKey(args.seed)
    out = rollout(params, env.handle, jnp.asarray(env.first_obs), key)
    action, reward, done, pi, value = map(np.asarray, out)
    pi = pi.reshape(-1, env.num_actions)
    episodes = int(done.sum())
    print(
        f"checkpoint at {meta.get('env_steps')} env steps; {cfg.env_id}, {args.envs} envs x "
        f"{args.steps} steps, actions sampled from pi"
    )
    print(
        "action frequencies:",
        np.round(np.bincount(action.ravel(), minlength=env.num_actions) / action.size, 3),
    )
    print("mean pi:           ", np.round(pi.mean(0), 3))
    print("std of pi (states):", np.round(pi.std(0), 4))
    print(f"V: mean {value.mean():.3f}, std over states {value.std():.3f}")
    print(
        f"episodes ended: {episodes}; reward per episode: "
        f"{reward.sum() / max(1, episodes):.3f} (training rewards: clipped if the run clips)"
    )


if __name__ == "__main__":
    main()
