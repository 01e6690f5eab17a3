"""Run folders for the sequence models: `rlax-zoo train prssm`.

A PR-SSM run folder holds config.json, metrics.csv (one row per chunk of `eval_every`
Adam steps and seed: the ELBO terms, and the test part's free-simulation RMSE,
log-likelihood and +-2 std coverage, which are only reported, never used to pick a
model), results.json (the final model's test metrics per seed, their mean and std, and
the training time), free_simulation.png (the paper's Figure 4: the measured test output
against the predictive mean +- 2 std) and checkpoints/. `resume=RUN_DIR` continues from
the newest checkpoint and ends where an uninterrupted run would; Ctrl-C finishes the chunk
in flight, checkpoints and exits.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from rlax_zoo import config as config_lib
from rlax_zoo.checkpointing import Checkpointer, CheckpointError
from rlax_zoo.runner import StopFlag, append_csv, read_csv
from sequence.prssm import PRSSMConfig, make_prssm_trainer
from sequence.sysid import gaussian_metrics, load_sysid_csv


@dataclasses.dataclass
class PRSSMRun:
    run_dir: str
    results: dict  # final test metrics (see module doc); empty when interrupted
    metrics: list[dict]
    interrupted: bool
    state: object  # TrainState with a leading seed axis
    prediction: tuple[np.ndarray, np.ndarray] | None  # (mean, var) [seeds, T, Dy], original units

    def summary(self) -> str:
        if self.interrupted:
            return f"interrupted (resume with --resume {self.run_dir})"
        r = self.results
        return (
            f"done in {r['train_seconds']:.0f} s: test RMSE {r['rmse_mean']:.4f} "
            f"(std {r['rmse_std']:.4f} over {len(r['per_seed'])} seeds), log-likelihood "
            f"{r['log_likelihood_mean']:.3f}, +-2 std coverage {r['coverage_2std_mean']:.3f}"
        )


def _default_run_dir(config: PRSSMConfig) -> str:
    name = os.path.splitext(os.path.basename(config.data))[0]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return os.path.join("runs", f"prssm-{name}-seed{config.seed}-{stamp}")


def run_prssm(
    config: PRSSMConfig | None = None,
    run_dir: str | None = None,
    resume: str | None = None,
    progress: bool = True,
    max_chunks: int | None = None,
    plot: bool = True,
) -> PRSSMRun:
    """Train PR-SSM on `config.data` in a run folder and evaluate it by free simulation of
    the test part (Doerr et al. 2018, Section 6.1); see the module doc for the folder.

    Args:
      config: PRSSMConfig (ignored when resuming: the run's own is used).
      run_dir: where to write (default runs/prssm-<data>-seed<seed>-<time>).
      resume: a run folder to continue from its newest checkpoint.
      progress: print one line per chunk.
      max_chunks: stop (with a checkpoint, like Ctrl-C) after this many chunks in this call.
      plot: write free_simulation.png at the end.
    """
    if resume is not None:
        run_dir = resume
        path = os.path.join(run_dir, "config.json")
        if not os.path.exists(path):
            raise CheckpointError(f"resume: {run_dir!r} is not a run folder (no config.json)")
        with open(path) as f:
            config = config_lib.from_json(PRSSMConfig, f.read())
    config = config or PRSSMConfig()
    config_lib.validate(config)
    data = load_sysid_csv(config.data, config.split)
    u_tr, y_tr, u_te, y_te = data.normalized()
    trainer = make_prssm_trainer(config, u_tr, y_tr)
    if resume is None:
        run_dir = run_dir or _default_run_dir(config)
        if os.path.exists(os.path.join(run_dir, "config.json")):
            raise FileExistsError(
                f"run_dir: {run_dir!r} already holds a run; pass resume={run_dir!r} to continue"
            )
        os.makedirs(run_dir, exist_ok=True)
        with open(os.path.join(run_dir, "config.json"), "w") as f:
            f.write(config_lib.to_json(config))

    seeds = config.num_seeds
    keys = jax.random.split(jax.random.PRNGKey(config.seed), seeds)  # raw keys: orbax-friendly
    state = jax.vmap(trainer.init)(keys)
    eval_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    checkpointer = Checkpointer(os.path.join(run_dir, "checkpoints"))
    chunk_sizes = [config.eval_every] * (config.iterations // config.eval_every)
    if config.iterations % config.eval_every:
        chunk_sizes.append(config.iterations % config.eval_every)
    chunk_index, train_seconds, rows = 0, 0.0, []
    metrics_path = os.path.join(run_dir, "metrics.csv")
    if resume is not None:
        restored, meta, _ = checkpointer.restore(lambda meta: {"state": state})
        state = jax.tree.map(jnp.asarray, restored["state"])
        chunk_index, train_seconds = int(meta["chunk"]), float(meta["train_seconds"])
        rows = [r for r in read_csv(metrics_path) if int(r["chunk"]) < chunk_index]
    written = 0

    train = {
        n: jax.jit(jax.vmap(lambda s, n=n: trainer.train_chunk(s, n)), donate_argnums=0)
        for n in set(chunk_sizes)
    }
    W = config.recognition_window
    predict = jax.jit(jax.vmap(trainer.predict, in_axes=(0, None, None, 0)))
    u_te_j, y_win = jnp.asarray(u_te, jnp.float32), jnp.asarray(y_te[:W], jnp.float32)

    def evaluate(params):
        mean, var = predict(params, u_te_j, y_win, eval_keys)
        mean = np.asarray(mean, np.float64) * data.y_std + data.y_mean
        var = np.asarray(var, np.float64) * data.y_std**2
        return mean, var, [gaussian_metrics(data.y_test, mean[s], var[s]) for s in range(seeds)]

    def save():
        meta = {"chunk": chunk_index, "train_seconds": train_seconds}
        checkpointer.save(chunk_index, {"state": state}, meta)

    interrupted, chunks_this_call, prediction = False, 0, None
    with StopFlag() as flag:
        while chunk_index < len(chunk_sizes):
            n = chunk_sizes[chunk_index]
            t0 = time.perf_counter()
            state, m = train[n](state)
            jax.block_until_ready(state)
            dt = time.perf_counter() - t0
            train_seconds += dt
            m = jax.tree.map(np.asarray, m)  # leaves [seeds, n]
            if not all(np.all(np.isfinite(v)) for v in m.values()):
                raise FloatingPointError(
                    f"the ELBO became non-finite in chunk {chunk_index}: nothing was "
                    "checkpointed after the last finite chunk; lower learning_rate or "
                    "max_grad_norm and start again"
                )
            mean, var, tests = evaluate(state.params)
            for s in range(seeds):
                rows.append(
                    dict(
                        chunk=chunk_index,
                        seed=s,
                        iteration=int(np.asarray(state.step)[s]),
                        **{k: float(v[s].mean()) for k, v in m.items()},
                        **{f"test_{k}": v for k, v in tests[s].items()},
                        iterations_per_sec=n / dt,
                        train_seconds=train_seconds,
                    )
                )
            chunk_index += 1
            chunks_this_call += 1
            if progress:
                print(
                    f"prssm: step {rows[-1]['iteration']}/{config.iterations} "
                    f"loss {np.mean(m['loss'][:, -1]):.4f} test RMSE "
                    + ", ".join(f"{t['rmse']:.4f}" for t in tests)
                    + f" ({n / dt:.1f} steps/s)",
                    flush=True,
                )
            written = append_csv(metrics_path, rows, written)
            prediction = (mean, var)
            stop = flag.stop or (max_chunks is not None and chunks_this_call >= max_chunks)
            if stop and chunk_index < len(chunk_sizes):
                save()
                interrupted = True
                break
            if chunk_index % config.checkpoint_every == 0 or chunk_index == len(chunk_sizes):
                save()

    results = {}
    if not interrupted:
        if prediction is None:  # resumed a finished run: evaluate the restored model
            mean, var, tests = evaluate(state.params)
            prediction = (mean, var)
        else:
            tests = [
                {k[5:]: r[k] for k in r if k.startswith("test_")} for r in rows[-seeds:]
            ]
        results = dict(
            data=config.data,
            train_seconds=train_seconds,
            per_seed=tests,
            **{
                f"{k}_{stat}": float(fn([t[k] for t in tests]))
                for k in ("rmse", "log_likelihood", "coverage_2std")
                for stat, fn in (("mean", np.mean), ("std", np.std))
            },
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
        ax.fill_between(t, mean_TD[:, d] - 2 * std, mean_TD[:, d] + 2 * std, alpha=0.3,
                        label="+-2 std")
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
