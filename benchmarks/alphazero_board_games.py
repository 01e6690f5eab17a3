"""AlphaZero (Silver et al. 2017, 2018) on board games: learning, and the search's speed.

    python benchmarks/alphazero_board_games.py [--seeds 0,1,2] [--set field=value ...]
        [--out JSON]
    python benchmarks/alphazero_board_games.py --search [--repeats 7] [--out JSON]
    python benchmarks/alphazero_board_games.py --self-play [--repeats 7] [--out JSON]
    python benchmarks/alphazero_board_games.py --evaluate RUN_DIR [--set eval_simulations=64 ...]

Learning: trains `rlax-zoo train alphazero`'s config (plus --set overrides; tic-tac-toe by
default) once per seed, in one process after another, and reports each run's final
evaluation: against perfect play (NumPy negamax, picking uniformly among optimal moves) and
against a uniformly random player, 200 games each with the agent in each seat half the time,
the agent playing the network's most probable legal move (no search); and the fraction of the
4520 reachable tic-tac-toe positions where that move is optimal. Connect Four
(`--set game=connect_four`) has no solver here: the random player only.

--evaluate: a finished run's network evaluated again with its evaluation fields changed
(`evaluate_alphazero`: eval_games, eval_simulations, opponent_simulations), e.g. with search.

--self-play: self-play's throughput, lockstep against continuous (`self_play`) and lockstep
with tree reuse (`tree_reuse`), the default config of each game otherwise, untrained
networks, no gradient steps: seconds per iteration and new replay positions per second, in
one process, interleaved, median of `--repeats` iterations after 3 that compile and fill
continuous self-play's slots. An iteration searches num_actors x max_moves positions in all
three; lockstep's include the ended games' idle moves.

--search: one batched search (`rlax_zoo.mcts.search`) against mctx's `muzero_policy` (if
mctx is installed: `pip install mctx`, not a dependency) on the same model (the game's rules,
the default network, untrained), the same batch, simulations and root noise, in one process,
interleaved, median of `--repeats` timed calls after compiling. The two differ in detail
(mctx normalises Q by the parent and siblings and masks invalid actions only at the root; we
use raw Q and mask at every node), so this compares cost, not trees.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.dqn_cartpole import (  # noqa: E402
    interleaved_seconds,
    machine_line,
    overrides_or_exit,
)
from rlax_zoo.agents.alphazero import (  # noqa: E402
    EVALUATION_FIELDS,
    AlphaZeroConfig,
    evaluate_alphazero,
    run_alphazero,
)

SHAPES = ((64, 32), (256, 32), (64, 128))  # (batch, simulations)


def time_search(game_name: str, repeats: int) -> list[dict]:
    """Milliseconds per batched search, ours against mctx's, interleaved (see module doc)."""
    import jax
    import jax.numpy as jnp

    from rlax_zoo import mcts
    from rlax_zoo.agents.alphazero import game_model, make_alphazero

    try:
        import mctx
    except ImportError:
        print("mctx is not installed (pip install mctx): nothing to compare against")
        return []
    trainer = make_alphazero(AlphaZeroConfig(game=game_name))
    game = trainer.game
    params = trainer.init(jax.random.PRNGKey(0)).params
    root_fn, recurrent_fn = game_model(game, trainer.network.apply)

    def mctx_recurrent(params, key, action, states):
        out, nxt = recurrent_fn(params, key, action, states)
        low = jnp.finfo(jnp.float32).min
        logits = jnp.where(out.invalid_actions, low, out.prior_logits)
        return mctx.RecurrentFnOutput(
            reward=out.reward, discount=out.discount, prior_logits=logits, value=out.value
        ), nxt

    def mctx_root(root):
        return mctx.RootFnOutput(
            prior_logits=root.prior_logits, value=root.value, embedding=root.embedding
        )

    rows = []
    for batch, sims in SHAPES:
        states = jax.vmap(lambda _: game.init())(jnp.arange(batch))
        fns = {
            "ours": jax.jit(
                lambda p, k, s, sims=sims: mcts.search(
                    p, k, root_fn(p, s), recurrent_fn, sims, ~s.legal_action_mask,
                    dirichlet_fraction=0.25, dirichlet_alpha=0.5,
                ).action_weights
            ),
            "mctx": jax.jit(
                lambda p, k, s, sims=sims: mctx.muzero_policy(
                    p, k, mctx_root(root_fn(p, s)), mctx_recurrent, sims,
                    invalid_actions=~s.legal_action_mask,
                    dirichlet_fraction=0.25, dirichlet_alpha=0.5,
                ).action_weights
            ),
        }  # fmt: skip
        key = jax.random.PRNGKey(1)
        for f in fns.values():
            jax.block_until_ready(f(params, key, states))
        times = interleaved_seconds(
            {
                name: lambda r, f=f, key=key, states=states: jax.block_until_ready(
                    f(params, jax.random.fold_in(key, r), states)
                )
                for name, f in fns.items()
            },
            repeats,
        )
        ours, theirs = (statistics.median(times[n]) * 1e3 for n in ("ours", "mctx"))
        ratios = [b / a for a, b in zip(times["ours"], times["mctx"], strict=True)]
        rows.append(
            dict(
                game=game_name,
                batch=batch,
                simulations=sims,
                ours_ms=ours,
                mctx_ms=theirs,
                mctx_over_ours=statistics.median(ratios),
                mctx_version=mctx.__version__,
            )
        )
        print(
            f"{game_name} batch {batch}, {sims} simulations: ours {ours:.1f} ms, mctx "
            f"{theirs:.1f} ms, mctx / ours {rows[-1]['mctx_over_ours']:.2f}x",
            flush=True,
        )
    return rows


SELF_PLAY_MODES = dict(
    lockstep={}, continuous=dict(self_play="continuous"), lockstep_reuse=dict(tree_reuse=True)
)


def time_self_play(game_name: str, repeats: int, warm_up: int = 3) -> dict:
    """One self-play iteration (no gradient steps) of each of SELF_PLAY_MODES, interleaved:
    seconds and new replay positions per iteration (see the module doc)."""
    import jax
    import numpy as np

    from rlax_zoo.agents.alphazero import make_alphazero

    states, trainers, positions = {}, {}, {}
    defaults = AlphaZeroConfig()
    num_actors = defaults.num_actors
    for mode, changes in SELF_PLAY_MODES.items():
        cfg = AlphaZeroConfig(game=game_name, updates_per_iteration=0, **changes)
        trainers[mode] = make_alphazero(cfg)
        state = trainers[mode].init(jax.random.PRNGKey(0))
        state, _ = trainers[mode].train_chunk(state, warm_up)  # compiles; fills the slots
        states[mode], positions[mode] = state, []

    def call(mode):
        def run(r):  # noqa: ARG001
            state, m = trainers[mode].train_chunk(states[mode], 1)
            done = m.get("games_finished", np.full(1, num_actors))
            positions[mode].append(float(np.asarray(m["game_length"] * done).sum()))
            states[mode] = jax.block_until_ready(state)

        return run

    times = interleaved_seconds({mode: call(mode) for mode in states}, repeats)
    row = dict(game=game_name, num_actors=num_actors, simulations=defaults.num_simulations)
    for mode in states:
        row[f"{mode}_s"] = statistics.median(times[mode])
        row[f"{mode}_positions"] = statistics.median(positions[mode])
        row[f"{mode}_positions_per_s"] = statistics.median(
            [n / t for n, t in zip(positions[mode], times[mode], strict=True)]
        )
    for mode in states:
        if mode != "lockstep":
            row[f"{mode}_over_lockstep"] = (
                row[f"{mode}_positions_per_s"] / row["lockstep_positions_per_s"]
            )
    print(
        f"{game_name}: "
        + ", ".join(
            f"{mode} {row[f'{mode}_s']:.2f} s for {row[f'{mode}_positions']:.0f} positions"
            for mode in states
        )
        + "; positions/s against lockstep: "
        + ", ".join(
            f"{mode} {row[f'{mode}_over_lockstep']:.2f}x" for mode in states if mode != "lockstep"
        ),
        flush=True,
    )
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="0", help="Comma-separated seeds, one run each.")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE")
    p.add_argument("--run-dir", default=None, help="Folder for the runs (default: a temp dir).")
    p.add_argument("--search", action="store_true", help="Time the search against mctx.")
    p.add_argument(
        "--self-play",
        action="store_true",
        help="Time lockstep self-play against continuous and against tree reuse.",
    )
    p.add_argument("--evaluate", default=None, metavar="RUN_DIR", help="Evaluate a run again.")
    p.add_argument(
        "--games", default="tic_tac_toe,connect_four", help="Games for --search, --self-play."
    )
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", default=None, help="Write the results as JSON here.")
    args = p.parse_args()
    print("command: python " + " ".join(sys.argv))
    print("machine: " + machine_line())
    if args.evaluate:
        changes = overrides_or_exit(p, AlphaZeroConfig, args.set)
        bad = sorted(set(changes) - set(EVALUATION_FIELDS))
        if bad:
            p.error(f"--set {bad[0]}: --evaluate changes only {', '.join(EVALUATION_FIELDS)}")
        t0 = time.perf_counter()
        result = evaluate_alphazero(args.evaluate, **changes)
        out = dict(run_dir=args.evaluate, changes=changes, evaluation=result)
        print(f"{changes}: " + ", ".join(f"{k} {v:.3f}" for k, v in result.items()))
        print(f"({time.perf_counter() - t0:.0f} s)", flush=True)
    elif args.self_play:
        out = dict(self_play=[time_self_play(g, args.repeats) for g in args.games.split(",")])
    elif args.search:
        out = dict(search=[r for g in args.games.split(",") for r in time_search(g, args.repeats)])
    else:
        import tempfile

        overrides = overrides_or_exit(p, AlphaZeroConfig, args.set, fixed=("seed",))
        root = args.run_dir or tempfile.mkdtemp(prefix="alphazero-bench-")
        runs = []
        for seed in (int(s) for s in args.seeds.split(",")):
            config = AlphaZeroConfig(**{**overrides, "seed": seed})
            run = run_alphazero(config, run_dir=os.path.join(root, f"seed{seed}"))
            print(f"seed {seed}: {run.summary()}", flush=True)
            runs.append(dict(seed=seed, **run.results))
        out = dict(overrides=overrides, runs=runs)
        keys = [k for k in runs[0] if k.startswith(("perfect_", "random_", "mcts_", "optimal"))]
        for k in keys + ["train_seconds"]:
            values = [r[k] for r in runs]
            print(f"{k}: " + ", ".join(f"{v:.3f}" for v in values), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
