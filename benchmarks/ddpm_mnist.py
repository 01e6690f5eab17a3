"""Bar (issue 6, DDPM): on MNIST-5k, the classifier-Frechet distance of 10,000 samples within
2x of the train-versus-test floor, trained in under 1 hour on this machine; DDIM with 50 steps
within 1.3x of the 1000-step ancestral sampler's distance.

    python benchmarks/ddpm_mnist.py [--run RUN_DIR] [--set field=value ...]
        [--samples 10000] [--ancestral-samples 1000] [--seed 0] [--clip-x0 C] [--out JSON]
        [--ddim-steps 50] [--eta E] [--spacing uniform|quadratic|leading] [--[no-]rederive-eps]
        [--sigma beta|posterior] [--reuse-ancestral JSON]
        [--xla-cpu-threads all|N]

Without --run it trains the default `rlax-zoo train ddpm` config (plus --set overrides)
first and reports its training time. The hour of the bar: `--set time_budget_s=3600
iterations=20000 eval_every=100` (training stops, checkpointed, before a 100-step chunk that
would pass 3600 s). Split: the first 400 images of each class train
(4000), the last 100 test (1000). The metric (`diffusion/metrics.py`): a small CNN trained on
the training split (its test accuracy is printed); Gaussians fitted to its 128 penultimate
features; the Frechet distance of a set of images to the TRAINING split's features. The
floor is the test split's distance (1000 real images never trained on). The distance is
biased upward for small sets, so each generated set is also compared at the test split's
size (the first 1000 samples) and the ancestral-versus-DDIM ratio uses equal sizes.

--eta and --spacing set the DDIM sampler's eta and timestep sub-sequence (default: the run's,
0 and uniform: the deterministic DDIM the bar names). --no-rederive-eps makes DDIM's
direction term keep the network's eps after x0-hat is clipped, instead of the clipped
x0-hat's eps. --sigma sets the ancestral sampler's variance (default: the run's, beta_t;
posterior: beta-tilde_t, Ho et al.'s other choice). The ancestral sampler needs an hour per
1000 samples here; --reuse-ancestral takes its row from an earlier output JSON of the same
run, seed and sample count (the classifier and the samples are deterministic given those).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.dqn_cartpole import (  # noqa: E402
    add_xla_cpu_threads_flag,
    apply_xla_cpu_threads,
    machine_line,
    overrides_or_exit,
)
from diffusion.ddpm import ANCESTRAL_SIGMAS  # noqa: E402
from diffusion.metrics import classifier_features, frechet_distance, train_classifier  # noqa: E402
from diffusion.train import (  # noqa: E402
    DDPMConfig,
    load_training_images,
    make_ddpm_trainer,
    run_ddpm,
    sample_images,
    save_grid,
)
from rlax_zoo import config as config_lib  # noqa: E402
from rlax_zoo.checkpointing import Checkpointer  # noqa: E402
from rlax_zoo.runner import read_csv  # noqa: E402


def load_run(run_dir):
    with open(os.path.join(run_dir, "config.json")) as f:
        config = config_lib.from_json(DDPMConfig, f.read())
    x_train, *_ = load_training_images(config)
    trainer = make_ddpm_trainer(config, x_train)
    template = trainer.init(jax.random.PRNGKey(config.seed))
    restored, _, _ = Checkpointer(os.path.join(run_dir, "checkpoints")).restore(
        lambda meta: {"state": template}
    )
    results = {}
    path = os.path.join(run_dir, "results.json")
    if os.path.exists(path):
        with open(path) as f:
            results = json.load(f)
    else:  # stopped early (Ctrl-C): the newest checkpoint's step and its metrics.csv row
        step = int(restored["state"].step)
        rows = [
            r for r in read_csv(os.path.join(run_dir, "metrics.csv")) if int(r["iteration"]) == step
        ]
        results = dict(iterations=step, stopped_early=True)
        if rows:
            results.update(
                train_seconds=float(rows[-1]["train_seconds"]), final_loss=float(rows[-1]["loss"])
            )
    return config, trainer, jax.tree.map(jnp.asarray, restored["state"].ema_params), results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default=None, help="Evaluate this trained run instead of training.")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE")
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--ancestral-samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--clip-x0",
        type=float,
        default=None,
        help="Override the run's clip_x0 (x0-hat clipped to [-c, c] in both samplers; 0: none).",
    )
    p.add_argument("--ddim-steps", type=int, default=50, help="DDIM network calls (the bar: 50).")
    p.add_argument("--eta", type=float, default=None, help="Override the run's sample_eta.")
    p.add_argument("--spacing", default=None, help="Override the run's sample_spacing.")
    p.add_argument(
        "--rederive-eps",
        default=None,
        action=argparse.BooleanOptionalAction,
        help="Override the run's sample_rederive_eps (DDIM's direction term after clipping).",
    )
    p.add_argument(
        "--sigma",
        default=None,
        choices=ANCESTRAL_SIGMAS,
        help="Override the run's sample_sigma (the ancestral sampler's sigma_t^2).",
    )
    p.add_argument(
        "--reuse-ancestral",
        default=None,
        metavar="JSON",
        help="Take the ancestral row from this earlier output of the same run and seed.",
    )
    p.add_argument("--root", default="runs/bench-ddpm")
    p.add_argument("--out", default="benchmarks/results/ddpm_mnist.json")
    # 'all' (XLA's default pool) is what `rlax-zoo train ddpm` uses; with 1, two runs share the
    # 2-core machine at almost full speed each (a U-Net gradient step of 64 images: 1.0 s with
    # one thread, 0.9 s with two, session 12)
    add_xla_cpu_threads_flag(p, default="all")
    args = p.parse_args()
    apply_xla_cpu_threads(args)
    print("command: python " + " ".join(sys.argv))
    print("machine: " + machine_line())
    run_dir = args.run
    if run_dir is None:
        base = DDPMConfig(sample_count=0)
        cfg = dataclasses.replace(base, **overrides_or_exit(p, DDPMConfig, args.set, base))
        run_dir = os.path.join(args.root, f"ddpm-{time.time():.0f}")
        run_ddpm(cfg, run_dir=run_dir, progress=True)
    config, trainer, params, results = load_run(run_dir)
    print(
        f"run: {run_dir}, trained {results.get('iterations')} steps in "
        f"{results.get('train_seconds', float('nan')):.0f} s"
    )

    x_train, y_train, x_test, y_test = load_training_images(config)
    given = config_lib.replace_given(
        config,
        clip_x0=args.clip_x0,
        sample_eta=args.eta,
        sample_spacing=args.spacing,
        sample_rederive_eps=args.rederive_eps,
        sample_sigma=args.sigma,
    )
    if given is not config:
        config, trainer = given, make_ddpm_trainer(given, x_train)
    row = None  # the reused ancestral row
    if args.reuse_ancestral:
        with open(args.reuse_ancestral) as f:
            reused = json.load(f)
        row = reused.get("samplers", {}).get("ancestral1000")
        same = (
            os.path.abspath(reused.get("run", "")) == os.path.abspath(run_dir)
            and reused.get("seed", 0) == args.seed
            and reused.get("clip_x0") == config.clip_x0
            and reused.get("sample_sigma", "beta") == config.sample_sigma
        )
        if row is None or not same or row["n"] != args.ancestral_samples:
            sys.exit(
                f"--reuse-ancestral: {args.reuse_ancestral} has no ancestral1000 row of run "
                f"{run_dir}, seed {args.seed}, clip_x0 {config.clip_x0}, sample_sigma "
                f"{config.sample_sigma} and "
                f"{args.ancestral_samples} samples"
            )
    clf = train_classifier(x_train, y_train, x_test, y_test, seed=args.seed)
    print(f"feature classifier: test accuracy {clf.test_accuracy:.4f}")
    f_train = classifier_features(clf.params, x_train)
    floor = frechet_distance(classifier_features(clf.params, x_test), f_train)
    n_test = len(x_test)

    rows = {}

    def evaluate(name, sampler, steps, n, grid=True):
        t0 = time.perf_counter()
        samples = sample_images(trainer, params, n, sampler, steps, seed=args.seed)
        dt = time.perf_counter() - t0
        feats = classifier_features(clf.params, samples)
        rows[name] = dict(
            n=n,
            seconds=dt,
            fd=frechet_distance(feats, f_train),
            fd_at_test_size=frechet_distance(feats[:n_test], f_train),
        )
        if grid:
            save_grid(samples[:64], f"{os.path.splitext(args.out)[0]}_{name}.png")
        print(
            f"{name}: {n} samples in {dt:.0f} s, FD {rows[name]['fd']:.3f} "
            f"(first {n_test}: {rows[name]['fd_at_test_size']:.3f})",
            flush=True,
        )
        return samples

    ddim, S = f"ddim{args.ddim_steps}", args.ddim_steps
    evaluate(ddim, "ddim", S, args.samples)
    if args.ancestral_samples:
        if row is not None:
            rows["ancestral1000"] = dict(row, reused=True)
            print(f"ancestral1000: FD {row['fd']:.3f}, from {args.reuse_ancestral}")
        else:
            evaluate("ancestral1000", "ddpm", config.num_steps, args.ancestral_samples)
        if args.ancestral_samples == args.samples:  # same seed and n: the same samples
            rows[f"{ddim}_same_n"] = rows[ddim]
        else:  # same seed and first batch (n >= 256): its first 64 samples are the others'
            evaluate(f"{ddim}_same_n", "ddim", S, args.ancestral_samples, grid=False)
    print(f"\nfloor (test split vs training split, {n_test} images): FD {floor:.3f}")
    print("| sampler | samples | network calls | FD to train | FD / floor | FD, first 1000 |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        calls = S if name.startswith("ddim") else config.num_steps
        print(
            f"| {name} | {r['n']} | {calls} | {r['fd']:.3f} | {r['fd'] / floor:.2f} | "
            f"{r['fd_at_test_size']:.3f} |"
        )
    if "ancestral1000" in rows:
        ratio = rows[f"{ddim}_same_n"]["fd"] / rows["ancestral1000"]["fd"]
        print(f"DDIM-{S} / ancestral-1000 at {args.ancestral_samples} samples: {ratio:.2f}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(
            dict(
                command=" ".join(sys.argv),
                run=run_dir,
                train=results,
                floor=floor,
                seed=args.seed,
                clip_x0=config.clip_x0,
                sample_eta=config.sample_eta,
                sample_spacing=config.sample_spacing,
                sample_rederive_eps=config.sample_rederive_eps,
                sample_sigma=config.sample_sigma,
                prediction=config.prediction,
                classifier_test_accuracy=clf.test_accuracy,
                samplers=rows,
            ),
            f,
            indent=2,
        )


if __name__ == "__main__":
    main()
