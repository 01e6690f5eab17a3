"""Run folders for the sequence models: `rlax-zoo train prssm`.

A PR-SSM run folder holds config.json, metrics.csv (one row per chunk of `eval_every`
Adam steps and seed: the ELBO terms, and the test part's free-simulation RMSE,
log-likelihood and +-2 std coverage, which are only reported, never used to pick a
model), results.json (the final model's test metrics per seed, their mean and std, the
training time and, with num_seeds > 1, the metrics of the seeds as one ensemble: the
equal-weight mixture of their predictive distributions), free_simulation.png (the
paper's Figure 4: the measured test output against the predictive mean +- 2 std) and
checkpoints/. `resume=RUN_DIR` continues from the newest checkpoint and ends where an
uninterrupted run would; Ctrl-C finishes the chunk in flight, checkpoints and exits.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from rlax_zoo.checkpointing import restore_run_state
from rlax_zoo.config import ConfigError
from rlax_zoo.runner import (
    ChunkRun,
    default_run_dir,
    drive_config_chunks,
    finished_run_config,
    prepare_run_dir,
)
from sequence.prssm import PRSSMConfig, make_prssm_trainer, unused_ladder
from sequence.sysid import gaussian_metrics, load_sysid_csv, mixture_moments


@dataclasses.dataclass
class PRSSMRun(ChunkRun):
    """results: the final test metrics (see module doc); state has a leading seed axis."""

    prediction: tuple[np.ndarray, np.ndarray] | None = None  # (mean, var) [seeds, T, Dy]

    def describe(self) -> str:
        r = self.results
        text = (
            f"done in {r['train_seconds']:.0f} s: test RMSE {r['rmse_mean']:.4f} "
            f"(std {r['rmse_std']:.4f} over {len(r['per_seed'])} seeds), log-likelihood "
            f"{r['log_likelihood_mean']:.3f}, +-2 std coverage {r['coverage_2std_mean']:.3f}"
        )
        if "ensemble" in r:
            e = r["ensemble"]
            text += (
                f"; the {len(r['per_seed'])} seeds as an ensemble: RMSE {e['rmse']:.4f}, "
                f"log-likelihood {e['log_likelihood']:.3f}, coverage {e['coverage_2std']:.3f}"
            )
        return text


def _load_checked(config: PRSSMConfig):
    """The record of `config.data`, split at `config.split`, refused when its test part is
    shorter than the recognition model's window (checked before a run folder is made)."""
    data = load_sysid_csv(config.data, config.split)
    test_rows = len(data.u_test)
    if test_rows < config.recognition_window:
        raise ConfigError(
            f"recognition_window: the test part has only {test_rows} rows, fewer than "
            f"recognition_window ({config.recognition_window}); move --split or shorten it"
        )
    return data


# The fields that change only the free simulation of a trained model, never its training:
# `evaluate_prssm` may change them on a finished run without training it again.
EVALUATION_FIELDS = ("clip_inputs", "eval_samples")


def _trainer(config: PRSSMConfig, data):
    u_tr, y_tr, _, _ = data.normalized()
    return make_prssm_trainer(config, u_tr, y_tr)


def _seed_keys(config: PRSSMConfig):
    """One raw (orbax-friendly) key per seed: each seed's init and, folded with 1, its test
    simulation's key."""
    return jax.random.split(jax.random.PRNGKey(config.seed), config.num_seeds)


def _initial_states(trainer, keys):
    """The seeds' initial TrainStates (leading [seeds] axis), seed k on ladder member k."""
    return jax.vmap(trainer.init)(keys, jnp.arange(len(keys)))


def _test_evaluator(config: PRSSMConfig, data, trainer, keys):
    """params [seeds, ...] -> (per-seed test metrics, (mean, var) [seeds, T, Dy] in original
    units): the free simulation of the test part after its first recognition_window steps."""
    _, _, u_te, y_te = data.normalized()
    W = config.recognition_window
    predict = jax.jit(jax.vmap(trainer.predict, in_axes=(0, None, None, 0)))
    u_te_j, y_win = jnp.asarray(u_te, jnp.float32), jnp.asarray(y_te[:W], jnp.float32)
    eval_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)

    def evaluate(params):
        mean, var = predict(params, u_te_j, y_win, eval_keys)
        mean = np.asarray(mean, np.float64) * data.y_std + data.y_mean
        var = np.asarray(var, np.float64) * data.y_std**2
        tests = [gaussian_metrics(data.y_test, mean[s], var[s]) for s in range(len(mean))]
        return tests, (mean, var)

    return evaluate


def _test_results(config, data, tests, prediction, train_seconds, state, out_of_time) -> dict:
    """results.json's dict (module doc): per-seed test metrics, their mean and std, and with
    more than one seed the metrics of their equal-weight mixture."""
    results = dict(
        data=config.data,
        train_seconds=train_seconds,
        iterations=int(np.max(state.step)),
        out_of_time=out_of_time,
        per_seed=tests,
        **{
            f"{k}_{stat}": float(fn([t[k] for t in tests]))
            for k in ("rmse", "log_likelihood", "coverage_2std")
            for stat, fn in (("mean", np.mean), ("std", np.std))
        },
    )
    if config.num_seeds > 1:
        results["ensemble"] = gaussian_metrics(data.y_test, *mixture_moments(*prediction))
    return results


def evaluate_prssm(run_dir: str, **changes) -> PRSSMRun:
    """A finished PR-SSM run's final model evaluated again, by free simulation of its test
    part (Doerr et al. 2018, the benchmark experiments and Figure 4; prediction (mean, var)
    [seeds, T_test, Dy] in the data's units), with evaluation-only fields changed
    (EVALUATION_FIELDS: clip_inputs, eval_samples): the same results as a fresh `run_prssm`
    of the changed config would give, without the training. Nothing in run_dir is written.

    Args:
      run_dir: a run folder whose training finished (it holds results.json).
      **changes: new values of evaluation-only fields, e.g. clip_inputs=True.
    Returns:
      a PRSSMRun whose results carry the changed config's test metrics (train_seconds, the
      run's own training time); metrics is empty.
    """
    config = finished_run_config(
        PRSSMConfig, run_dir, changes, EVALUATION_FIELDS, "evaluate_prssm", "run_prssm"
    )
    data = _load_checked(config)
    trainer = _trainer(config, data)
    keys = _seed_keys(config)
    state, meta = restore_run_state(run_dir, _initial_states(trainer, keys))
    tests, prediction = _test_evaluator(config, data, trainer, keys)(state.params)
    with open(os.path.join(run_dir, "results.json")) as f:
        out_of_time = json.load(f)["out_of_time"]
    results = _test_results(
        config, data, tests, prediction, float(meta["train_seconds"]), state, out_of_time
    )
    return PRSSMRun(run_dir, results, [], False, state, prediction)


def run_prssm(
    config: PRSSMConfig | None = None,
    run_dir: str | None = None,
    resume: str | None = None,
    progress: bool = True,
    max_chunks: int | None = None,
    plot: bool = True,
) -> PRSSMRun:
    """Train PR-SSM on `config.data` in a run folder and evaluate it by free simulation of
    the test part (Doerr et al. 2018, benchmark experiments); see the module doc for the folder.

    Args:
      config: PRSSMConfig (ignored when resuming: the run's own is used).
      run_dir: where to write (default runs/prssm-<data>-seed<seed>-<time>).
      resume: a run folder to continue from its newest checkpoint.
      progress: print one line per chunk.
      max_chunks: stop (with a checkpoint, like Ctrl-C) after this many chunks in this call.
      plot: write free_simulation.png at the end.
    """
    cfg = config or PRSSMConfig()
    default = default_run_dir("prssm", cfg, label=os.path.splitext(os.path.basename(cfg.data))[0])
    config, run_dir, data = prepare_run_dir(
        PRSSMConfig, config, run_dir, resume, default, _load_checked
    )
    if (why := unused_ladder(config)) is not None:
        warnings.warn(why, stacklevel=2)
    trainer = _trainer(config, data)
    seeds = config.num_seeds
    keys = _seed_keys(config)
    train = {}

    def train_fn(n):
        if n not in train:
            train[n] = jax.jit(jax.vmap(lambda s: trainer.train_chunk(s, n)), donate_argnums=0)
        return train[n]

    test_metrics = _test_evaluator(config, data, trainer, keys)
    last = {}

    def evaluate(params):
        tests, last["prediction"] = test_metrics(params)
        return tests

    def after_chunk(state, chunk, m, dt, total_seconds):
        n = m["loss"].shape[1]  # leaves [seeds, n]
        tests = evaluate(state.params)
        rows = [
            dict(
                chunk=chunk,
                seed=s,
                iteration=int(np.asarray(state.step)[s]),
                **{k: float(v[s].mean()) for k, v in m.items()},
                **{f"test_{k}": v for k, v in tests[s].items()},
                iterations_per_sec=n / dt,
                train_seconds=total_seconds,
            )
            for s in range(seeds)
        ]
        if progress:
            print(
                f"prssm: step {rows[-1]['iteration']}/{config.iterations} loss "
                f"{np.mean(m['loss'][:, -1]):.4f} test RMSE "
                + ", ".join(f"{t['rmse']:.4f}" for t in tests)
                + f" ({n / dt:.1f} steps/s)",
                flush=True,
            )
        return rows

    loop = drive_config_chunks(
        run_dir,
        config,
        _initial_states(trainer, keys),
        lambda s, n: train_fn(n)(s),
        after_chunk,
        resume is not None,
        max_chunks,
        what="the ELBO",
    )
    state, rows, train_seconds = loop.state, loop.rows, loop.train_seconds
    interrupted, prediction = loop.interrupted, last.get("prediction")

    results = {}
    if not interrupted:
        if prediction is None:  # resumed a finished run: evaluate the restored model
            tests = evaluate(state.params)
            prediction = last["prediction"]
        else:
            tests = [{k[5:]: r[k] for k in r if k.startswith("test_")} for r in rows[-seeds:]]
        results = _test_results(
            config, data, tests, prediction, train_seconds, state, out_of_time=loop.out_of_time
        )
        with open(os.path.join(run_dir, "results.json"), "w") as f:
            json.dump(results, f, indent=2)
        if plot:
            plot_free_simulation(
                data.y_test,
                prediction[0][0],
                prediction[1][0],
                os.path.join(run_dir, "free_simulation.png"),
                title=f"PR-SSM free simulation, {os.path.basename(config.data)} (seed 0): "
                f"RMSE {tests[0]['rmse']:.3f}",
            )
    return PRSSMRun(run_dir, results, rows, interrupted, state, prediction)


def plot_free_simulation(y_TD, mean_TD, var_TD, path, title="", baseline_TD=None):
    """The measured output against the predictive mean +- 2 std (Doerr et al. 2018, Fig. 4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    D = y_TD.shape[1]
    fig, axes = plt.subplots(D, 1, figsize=(9, 3 * D), squeeze=False)
    t = np.arange(len(y_TD))
    for d in range(D):
        ax = axes[d, 0]
        std = np.sqrt(var_TD[:, d])
        ax.fill_between(
            t, mean_TD[:, d] - 2 * std, mean_TD[:, d] + 2 * std, alpha=0.3, label="+-2 std"
        )
        ax.plot(t, y_TD[:, d], "k", lw=1, label="measured")
        ax.plot(t, mean_TD[:, d], lw=1, label="PR-SSM mean")
        if baseline_TD is not None:
            ax.plot(t, baseline_TD[:, d], "--", lw=1, label="ARX")
        ax.set_xlabel("test time step")
        ax.set_ylabel(f"y{d + 1}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="upper right")
    axes[0, 0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
