"""Bar (issue 5): PR-SSM's free-simulation test RMSE below the best of every column of
Doerr et al. 2018, Table 1 (actuator 0.438, ballbeam 0.073, dryer 0.140), with about 95%
of test outputs inside +-2 std, each model trained in under 5 minutes on this machine;
a linear ARX model fitted to the same data beside it.

    python benchmarks/prssm_sysid.py [--datasets actuator,ballbeam,dryer] [--seeds 5]
        [--ensemble K] [--data-dir ../shared/data/sysid] [--set field=value ...]
        [--select field=v1,v2,... ...] [--xla-cpu-threads 1|all]

    # the bars' recipe (benchmarks/RESULTS.md, session 29): per dataset, the clip and how
    # many rungs of the length-scale ladder the 8-model ensemble uses are chosen on the
    # training half, from one 4-model validation run:
    python benchmarks/prssm_sysid.py --ensemble 8 \\
        --set lengthscale_ladder=2.0 lengthscale_rungs=4 \\
        --select clip_inputs=false,true --select-seeds 4 --select-rungs

Protocol (../shared/data/sysid/SOURCES.md): z-score with the training half's statistics,
train on the first half, freely simulate the whole test half from the inputs alone after
the first `recognition_window` test steps have been read to infer q(x_1), RMSE of the
predictive mean in original units; mean and std over seeds. Each seed is a separate
`run_prssm` with the default `rlax-zoo train prssm` config (plus --set overrides) and is
timed on its own: "train s" is the wall time of its Adam steps, compilation included,
evaluation excluded. The final model is reported; test numbers never choose anything.
With `--select`, each dataset's values are chosen before the protocol runs, by the mean RMSE
of `--select-seeds` models trained on the first 3/4 of the training half and freely
simulated on its last quarter (the protocol above, inside the training half); with
`--ensemble K` by the RMSE of their mixture instead. Values that only change the free
simulation (clip_inputs, eval_samples) share one training. `--select-rungs` also chooses
how many rungs R of the ladder the ensemble uses, scoring R by the mixture of the
validation models on rungs below R (R = 1: no ladder); its "train s" column adds the
selection's training to the repeat's.
With `--ensemble K` each repeat is one run of K models trained at once (`num_seeds=K`,
vmapped), reported as one ensemble: the equal-weight mixture of their predictive
distributions (`sequence.sysid.mixture_moments`); "train s" is then the whole ensemble's.
ARX: orders (na, nb <= 8) chosen by free-simulation RMSE on the training half, simulated
on the test half from its first max(na, nb) measured outputs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.dqn_cartpole import (  # noqa: E402
    add_xla_cpu_threads_flag,
    apply_xla_cpu_threads,
    machine_line,
    overrides_or_exit,
)
from sequence.prssm import PRSSMConfig, ladder_rung  # noqa: E402
from sequence.runs import (  # noqa: E402
    EVALUATION_FIELDS,
    evaluate_prssm,
    plot_free_simulation,
    run_prssm,
)
from sequence.sysid import (  # noqa: E402
    gaussian_metrics,
    load_sysid_csv,
    mixture_moments,
    select_arx,
    simulate_arx,
    write_sysid_csv,
)

# Doerr et al. 2018, Table 1: PR-SSM's RMSE and the best other method per dataset
PAPER = {
    "actuator": (0.502, 0.438, "REVARB 1"),
    "ballbeam": (0.073, 0.087, "NIGP"),
    "dryer": (0.140, 0.146, "MSGP"),
}


def arx_baseline(data):
    u_tr, y_tr, u_te, y_te = data.normalized()
    theta, na, nb, _ = select_arx(u_tr, y_tr)
    sim = simulate_arx(theta, u_te, y_te, na, nb) * data.y_std + data.y_mean
    rmse = float(np.sqrt(np.mean((sim - data.y_test) ** 2)))
    return rmse, na, nb, sim


# fields the benchmark sets itself: per dataset, per repeat, and for the validation runs
SET_BY_BENCHMARK = ("data", "seed", "num_seeds")
SET_BY_SELECTION = (*SET_BY_BENCHMARK, "split")


def parse_grid(parser, items: list[str], overrides: dict) -> list[dict]:
    """["field=v1,v2", ...] -> every combination, as override dicts typed like PRSSMConfig
    and validated with `overrides` (one empty dict when nothing is to be selected); a bad
    item, or a field that --set or the benchmark already sets, ends in `parser.error`."""
    grid, fixed = [{}], (*SET_BY_SELECTION, *overrides)
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not values:
            parser.error(f"--select {item!r}: expected FIELD=V1,V2,...")
        typed = [
            overrides_or_exit(parser, PRSSMConfig, [f"{name}={v}"], fixed=fixed, flag="--select")
            for v in values.split(",")
        ]
        grid = [{**g, **t} for g in grid for t in typed]
    for point in grid:  # each value alone was checked above; now each combination
        overrides_or_exit(parser, PRSSMConfig, [], PRSSMConfig(**overrides, **point))
    return grid


def rung_candidates(config: PRSSMConfig) -> list[tuple[dict, list[int]]]:
    """--select-rungs: for each R = 1, 2, ... up to the rungs that `config`'s num_seeds
    models cover, (the overrides that give an ensemble R rungs, the models of `config` whose
    rung is below R). R = 1 is the plain ensemble: no ladder."""
    rungs = [ladder_rung(k, config) for k in range(config.num_seeds)]
    out = []
    for R in range(1, max(rungs) + 2):
        no_ladder = dict(lengthscale_ladder=1.0, lengthscale_rungs=0)
        fields = no_ladder if R == 1 else dict(lengthscale_rungs=R)
        out.append((fields, [k for k, r in enumerate(rungs) if r < R]))
    return out


def select_on_training_half(
    base, data, grid, seeds, folder, name, as_ensemble=False, select_rungs=False
):
    """The candidate with the lowest free-simulation RMSE of `seeds` models trained on the
    first 3/4 of the training half and simulated on its last quarter (a validation split:
    the test half is never read): the mean of their RMSEs, or with `as_ensemble` the RMSE of
    their equal-weight mixture (what the protocol reports with --ensemble). The candidates
    are the grid's points, each with every `rung_candidates` choice when `select_rungs` (the
    ladder's rungs below R scored from one run that covers them all). Points that differ
    only in evaluation fields (clip_inputs, eval_samples) share one training: the later ones
    re-evaluate the first one's models (`evaluate_prssm`). Returns (the chosen overrides,
    one row per candidate, the seconds of training all the distinct trainings took)."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}_training_half.csv")
    write_sysid_csv(path, data.u_train, data.y_train, data.u_names, data.y_names)
    y_val = load_sysid_csv(path, 0.75).y_test  # the validation quarter, original units
    rows, trained, seconds = [], {}, 0.0  # trained: training fields -> (run folder, label)
    for point in grid:
        cfg = dataclasses.replace(base, data=path, split=0.75, num_seeds=seeds, seed=0, **point)
        label = " ".join(f"{k}={v}" for k, v in point.items())
        training = tuple((k, v) for k, v in point.items() if k not in EVALUATION_FIELDS)
        if training in trained:
            run_dir, trained_as = trained[training]
            run = evaluate_prssm(
                run_dir, **{k: v for k, v in point.items() if k in EVALUATION_FIELDS}
            )
        else:
            run_dir, trained_as = os.path.join(folder, label.replace(" ", "_") or "base"), None
            run = run_prssm(cfg, run_dir=run_dir, progress=False, plot=False)
            trained[training] = (run_dir, label)
            seconds += run.results["train_seconds"]
        per_model, (mean, var) = run.results["per_seed"], run.prediction
        for fields, models in rung_candidates(cfg) if select_rungs else [({}, range(seeds))]:
            mixture = gaussian_metrics(y_val, *mixture_moments(mean[models], var[models]))
            members = [per_model[k] for k in models]
            rows.append(
                dict(
                    overrides={**point, **fields},
                    rmse_mean=float(np.mean([m["rmse"] for m in members])),
                    rmse_per_seed=[m["rmse"] for m in members],
                    log_likelihood_mean=float(np.mean([m["log_likelihood"] for m in members])),
                    coverage_2std_mean=float(np.mean([m["coverage_2std"] for m in members])),
                    mixture=mixture,
                    models=list(models),
                    train_seconds=run.results["train_seconds"],
                    models_of=trained_as,  # None: trained for this point
                )
            )
            r = rows[-1]
            print(
                f"{name} validation, "
                + " ".join(f"{k}={v}" for k, v in r["overrides"].items())
                + f": RMSE {r['rmse_mean']:.4f} (models "
                + " ".join(f"{x:.3f}" for x in r["rmse_per_seed"])
                + f"; their mixture {mixture['rmse']:.4f}, coverage "
                f"{mixture['coverage_2std']:.3f}) log-lik {r['log_likelihood_mean']:.3f} "
                f"coverage {r['coverage_2std_mean']:.3f}"
                + (
                    f" train {r['train_seconds']:.0f} s"
                    if trained_as is None
                    else f" (the models of {trained_as}, evaluated again)"
                ),
                flush=True,
            )
    score = (lambda r: r["mixture"]["rmse"]) if as_ensemble else (lambda r: r["rmse_mean"])
    best = min(rows, key=score)
    return best["overrides"], rows, seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default="actuator,ballbeam,dryer")
    p.add_argument("--seeds", type=int, default=5, help="repeats (each a model or ensemble)")
    p.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="the repeats are seeds first-seed, first-seed+1, ...",
    )
    p.add_argument("--ensemble", type=int, default=1, help="models per repeat, as one ensemble")
    p.add_argument("--data-dir", default="../shared/data/sysid")
    p.add_argument("--root", default="runs/bench-prssm")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE")
    p.add_argument(
        "--out",
        help="default: benchmarks/results/prssm_sysid[_ensembleK].json; the seed-0 plots "
        "prssm_<dataset>[_ensembleK].png go to the same folder",
    )
    p.add_argument(
        "--select",
        nargs="*",
        default=[],
        metavar="FIELD=V1,V2,...",
        help="per dataset, choose among these values (every combination of the fields given) "
        "by the mean RMSE of --select-seeds models trained on the first 3/4 of the training "
        "half and freely simulated on its last quarter (with --ensemble, the RMSE of their "
        "mixture; values of clip_inputs and eval_samples share one training; a tie goes to "
        "the combination given first); the test half is never read, and the chosen values "
        "then run the protocol",
    )
    p.add_argument("--select-seeds", type=int, default=3, help="models per candidate (vmapped)")
    p.add_argument(
        "--select-rungs",
        action="store_true",
        help="with --ensemble and a ladder (--set lengthscale_ladder=L, L != 1), also choose "
        "how many of the ladder's rungs the ensemble uses (lengthscale_rungs R; R = 1: no "
        "ladder), each R scored by the mixture of the validation models whose rung is below R "
        "(one validation run per --select point, its --select-seeds models covering the rungs)",
    )
    # 1 is what `rlax-zoo train prssm` uses (its --xla-cpu-threads auto), so "train s" times
    # what the command line runs; 'all' gives XLA's default pool (the tables before session 9)
    add_xla_cpu_threads_flag(p)
    args = p.parse_args()
    apply_xla_cpu_threads(args)
    print("command: python " + " ".join(sys.argv))
    print("machine: " + machine_line())
    overrides = overrides_or_exit(p, PRSSMConfig, args.set, fixed=SET_BY_BENCHMARK)
    grid = parse_grid(p, args.select, overrides)
    selecting = bool(args.select or args.select_rungs)
    if args.seeds < 1:
        p.error(f"--seeds: need at least 1 repeat, got {args.seeds}")
    if args.first_seed < 0:
        p.error(f"--first-seed: seeds are >= 0, got {args.first_seed}")
    if args.select_seeds < 1:
        p.error(f"--select-seeds: need at least 1 model, got {args.select_seeds}")
    if args.ensemble < 1:
        p.error(f"--ensemble: need at least 1 model, got {args.ensemble}")
    if args.select_rungs:
        ladder = dataclasses.replace(PRSSMConfig(), **overrides).lengthscale_ladder
        if args.ensemble < 2 or ladder == 1.0 or args.select_seeds < 2:
            p.error(
                "--select-rungs: chooses the rungs of an ensemble's length-scale ladder; it "
                "needs --ensemble >= 2, --set lengthscale_ladder=L with L != 1 and "
                f"--select-seeds >= 2 (got {args.ensemble}, {ladder}, {args.select_seeds})"
            )
        chosen_too = {"lengthscale_ladder", "lengthscale_rungs"} & {
            k for point in grid for k in point
        }
        if chosen_too:
            field = sorted(chosen_too)[0]
            p.error(f"--select-rungs: chooses {field} itself; drop it from --select")
    suffix = f"_ensemble{args.ensemble}" if args.ensemble > 1 else ""
    out = args.out or f"benchmarks/results/prssm_sysid{suffix}.json"
    plot_dir = os.path.dirname(out) or "."
    summary = {}
    for name in args.datasets.split(","):
        path = os.path.join(args.data_dir, f"{name}.csv")
        base = dataclasses.replace(PRSSMConfig(data=path), **overrides)
        if args.ensemble > 1:
            base = dataclasses.replace(base, num_seeds=args.ensemble)
        data = load_sysid_csv(path, base.split)
        selection = None
        if selecting:
            folder = os.path.join(args.root, f"{name}-validation-{time.time():.0f}")
            chosen, rows, seconds = select_on_training_half(
                base,
                data,
                grid,
                args.select_seeds,
                folder,
                name,
                as_ensemble=args.ensemble > 1,
                select_rungs=args.select_rungs,
            )
            base = dataclasses.replace(base, **chosen)
            selection = dict(chosen=chosen, candidates=rows, train_seconds=seconds)
            print(
                f"{name}: chose {chosen} on the training half ({seconds:.0f} s of training)",
                flush=True,
            )
        arx_rmse, na, nb, arx_sim = arx_baseline(data)
        runs = []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            cfg = dataclasses.replace(base, seed=seed)
            run_dir = os.path.join(args.root, f"{name}-seed{seed}-{time.time():.0f}")
            run = run_prssm(cfg, run_dir=run_dir, progress=False, plot=False)
            members = run.results["per_seed"]
            r = run.results["ensemble"] if args.ensemble > 1 else members[0]
            runs.append(dict(seed=seed, train_seconds=run.results["train_seconds"], **r))
            if args.ensemble > 1:
                runs[-1]["members"] = members
            print(
                f"{name} seed {seed}: RMSE {r['rmse']:.4f} log-lik {r['log_likelihood']:.3f} "
                f"coverage {r['coverage_2std']:.3f} train {run.results['train_seconds']:.0f} s"
                + "".join(
                    f"; member RMSE {m['rmse']:.4f} coverage {m['coverage_2std']:.3f}"
                    for m in (members if args.ensemble > 1 else [])
                ),
                flush=True,
            )
            if seed == 0:
                mean, var = mixture_moments(*run.prediction)
                what = f"{args.ensemble}-model ensemble" if args.ensemble > 1 else "seed 0"
                os.makedirs(plot_dir, exist_ok=True)
                plot_free_simulation(
                    data.y_test,
                    mean,
                    var,
                    os.path.join(plot_dir, f"prssm_{name}{suffix}.png"),
                    title=f"{name}: PR-SSM {what} (RMSE {r['rmse']:.3f}) and ARX({na},{nb}) "
                    f"(RMSE {arx_rmse:.3f}), test half",
                    baseline_TD=arx_sim,
                )
        rm = np.array([r["rmse"] for r in runs])
        summary[name] = dict(
            config=dataclasses.asdict(base),
            runs=runs,
            rmse_mean=float(rm.mean()),
            rmse_std=float(rm.std()),
            log_likelihood_mean=float(np.mean([r["log_likelihood"] for r in runs])),
            coverage_2std_mean=float(np.mean([r["coverage_2std"] for r in runs])),
            train_seconds_max=float(max(r["train_seconds"] for r in runs)),
            # what one repeat costs from the raw record: the selection's training, then its own
            train_seconds_with_selection_max=float(
                max(r["train_seconds"] for r in runs) + (selection or {}).get("train_seconds", 0)
            ),
            arx=dict(rmse=arx_rmse, na=na, nb=nb),
            selection=selection,
        )
    print(
        f"\n| dataset | PR-SSM{' ensemble of ' + str(args.ensemble) if suffix else ''} RMSE "
        "(mean +- std) | paper PR-SSM | best other (paper) | ARX "
        "RMSE (orders) | log-lik | +-2 std coverage | max train s"
        + (" (with the selection's)" if selecting else "")
        + " |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, s in summary.items():
        paper, best, who = PAPER.get(name, (float("nan"), float("nan"), "-"))
        print(
            f"| {name} | {s['rmse_mean']:.3f} +- {s['rmse_std']:.3f} | {paper:.3f} | "
            f"{best:.3f} ({who}) | {s['arx']['rmse']:.3f} ({s['arx']['na']},{s['arx']['nb']}) | "
            f"{s['log_likelihood_mean']:.3f} | {s['coverage_2std_mean']:.3f} | "
            f"{s['train_seconds_max']:.0f}"
            + (f" ({s['train_seconds_with_selection_max']:.0f})" if selecting else "")
            + " |"
        )

    os.makedirs(plot_dir, exist_ok=True)
    with open(out, "w") as f:
        json.dump(dict(command=" ".join(sys.argv), results=summary), f, indent=2)


if __name__ == "__main__":
    main()
