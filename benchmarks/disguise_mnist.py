"""Issue 6, the disguise attack at MNIST scale (Lu et al. 2024, the symbol case).

    python benchmarks/disguise_mnist.py [--autoencoder RUN_DIR] [--psnr 25 20 17 14]
        [--ldm-iterations 3000] [--samples 500] [--bases all|same-class|nearest] [--reach]
        [--reach-score contrast|margin] [--target x_c|stamped-bases]
        [--feature encoder|reconstruction] [--ldm-disguises algorithm-1|ascent|faint-stamp]
        [--ldm-set FIELD=VALUE ...] [--guidance W [W ...]] [--labels digits|concept]

1. The autoencoder (`rlax-zoo train autoencoder`'s default config; or --autoencoder RUN_DIR).
2. The symbol detector, validated: clean test digits and stamped test digits, raw and passed
   through the autoencoder (the latent model's samples are decoded, so decoded stamps must be
   detected).
3. x_c: the first test digit with the symbol stamped in its corner. Bases: 100 clean training
   digits (10 per class; with --bases same-class 100 of x_c's class; with --bases nearest the
   100 of x_c's class whose latents lie nearest E(x_c)) that the clean set below does not
   contain. Disguises by Algorithm 1 (alpha 0, --optimizer, D1 ball at each PSNR
   floor, gamma_2 a quarter of the same-class distance so that each floor shows how far the
   budget goes), reported against the bars: PSNR against x_b,
   latent distance D2 to E(x_c) against the median D2 of two clean test digits of one class.
   Beside them, the latent path: the bases' latents moved toward their stamped latents,
   decoded, to show how small D2 must be for a revelation to carry the symbol.
   With --target stamped-bases each disguise has its own copyrighted image, its base with the
   symbol stamped on it (the copyrighted content is the symbol, not x_c's digit), so the
   latent distance the budget buys is spent on the symbol alone. With --feature
   reconstruction, Algorithm 1's D2 compares revelations D(E(.)) instead of latents E(.)
   (the bars' D2 stays the latent one).
4. Detection: step 1 scores -D2(E(x), E(x_c)) on 1000 clean test digits against the
   disguises (ROC AUROC; with --target stamped-bases every clean digit against every
   target); step 2 the revelation D(E(x)) compared with x_c (D1, and whether
   the symbol detector fires on it). With --reach, a bound that ignores the latent: the
   symbol score of D(E(x_d)) (or, with --reach-score margin, the soft minimum of the
   detector's margins, which needs all four sides of the square) maximised directly within
   each PSNR floor, beside a faint stamp of the same PSNR (can a disguise of that budget
   reveal the symbol at all?).
5. The latent diffusion experiment for the disguises of the first PSNR floor: a latent DDPM on
   1000 clean digits + 100 disguises x 20, a control on the 1000 clean digits, and a
   positive control on 1000 clean + 100 copies of x_c x 20 (direct infringement; with
   --target stamped-bases the 100 targets x 20; with --ldm-disguises ascent the disguises are
   --reach's ascent from the faint stamp instead of Algorithm 1's, and with --ldm-disguises
   faint-stamp they are no disguises but the bases with the symbol stamped at a fraction
   --faint-fraction of its contrast); the
   fraction of `--samples` decoded samples with the symbol for each, and sample grids.
   With --guidance the three latent models are class-conditional on the digits' labels
   (disguises and copies carry their bases' labels, or x_c's), trained with labels dropped
   10% of the time, and sampled for x_c's class with classifier-free guidance at each weight
   w (Ho & Salimans 2022, eq. 6; w = 0: the conditional model alone), as text-conditional
   latent diffusion models such as Stable Diffusion are sampled. With --labels concept the
   added images carry a label of their own instead (10, "the concept", like the token that
   textual inversion learns from a handful of images, or DreamBooth's identifier), the
   samples are drawn for that label, and the control is trained on the 1000 clean digits plus
   the undisguised bases x 20 under it: the disguise model and the control then differ only in
   the disguises' perturbations. (Lu et al.'s released symbol experiment learns a
   textual-inversion token from its disguises and samples "a photo of *" with DDIM-50 and
   the LDM sampler's scale 10, eps_u + 10 (eps_c - eps_u): w = 9 here.)
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
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.dqn_cartpole import machine_line, overrides_or_exit  # noqa: E402
from diffusion import symbol  # noqa: E402
from diffusion.disguise import (  # noqa: E402
    OPTIMIZERS,
    auroc,
    detection_scores,
    feature_distance,
    generate_disguises,
    image_distance,
    project,
    psnr,
    revelation_distances,
)
from diffusion.latent import (  # noqa: E402
    AutoencoderConfig,
    latent_ddpm_config,
    load_autoencoder,
    run_autoencoder,
    same_class_latent_distance,
    train_latent_ddpm,
)
from diffusion.train import load_training_images, save_grid  # noqa: E402


def reach(
    ae, x_b: np.ndarray, floor: float, steps: int, opt, plot_dir: str, score=symbol.symbol_score
) -> tuple[dict, dict]:
    """What perturbations of the bases x_b [N, H, W, C] within a PSNR floor can reveal,
    whatever they do to the latent: (1) a faint stamp, x_b moved toward add_symbol(x_b) as far
    as the floor allows; (2) `score` of D(E(x_d)) (the symbol score, or
    `symbol.detector_margin`, which needs all of the detector's tests) maximised directly,
    by `steps` of projected ascent (the optax optimizer `opt`) from x_b and from the faint
    stamp (local searches: they bound what such searches find, not every perturbation). For
    each, the median symbol score, the median of the smallest of the four sides, and the
    share flagged by the detector, of x_d itself and of its revelation D(E(x_d)). Saves the
    ascents from x_b and from the faint stamp as plot_dir/disguise_reach_psnrP.png and
    disguise_reach_faint_psnrP.png (8 bases, their x_d, then D(E(x_d))). Returns
    {"psnr_floor": floor, name: {...}} for the three, and {name: x_d [N, H, W, C]}."""
    mse_radius = 4.0 / 10 ** (floor / 10)
    delta = symbol.add_symbol(x_b) - x_b
    t = np.sqrt(mse_radius / np.mean(delta**2, axis=(1, 2, 3), keepdims=True))
    faint = x_b + np.minimum(t, 1.0) * delta

    def reveal(x):
        return ae.decode(ae.encode(x))

    @jax.jit
    def ascend(x, opt_state):
        grad = jax.grad(lambda x: -score(reveal(x)).sum())(x)
        updates, opt_state = opt.update(grad, opt_state, x)
        return project(optax.apply_updates(x, updates), x_b, mse_radius=mse_radius), opt_state

    def ascent(x):
        x = jnp.asarray(x)
        opt_state = opt.init(x)
        for _ in range(steps):
            x, opt_state = ascend(x, opt_state)
        return np.asarray(x)

    row = {"psnr_floor": floor}
    tries = {
        "faint stamp": faint,
        "ascent from x_b": ascent(x_b),
        "ascent from the faint stamp": ascent(faint),
    }
    for name, x_d in tries.items():
        revealed = np.asarray(reveal(x_d))
        row[name] = dict(
            psnr_min=float(psnr(x_d, x_b).min()),
            score_median=float(np.median(symbol.symbol_score(x_d))),
            flagged=float(symbol.has_symbol(x_d).mean()),
            revealed_score_median=float(np.median(symbol.symbol_score(revealed))),
            revealed_min_side_median=float(np.median(symbol.frame_sides(revealed).min(-1))),
            revealed_flagged=float(symbol.has_symbol(revealed).mean()),
            revealed_flagged_no_side_test=float(symbol.has_symbol(revealed, min_side=None).mean()),
        )
        print(f"reach at {floor:g} dB, {name}: {json.dumps(row[name])}", flush=True)
        if name != "faint stamp":
            grid = np.concatenate([x_b[::10][:8], x_d[::10][:8], revealed[::10][:8]])
            slug = "" if name == "ascent from x_b" else "_faint"
            save_grid(grid, os.path.join(plot_dir, f"disguise_reach{slug}_psnr{floor:g}.png"))
    return row, tries


def latent_path(ae, x_b: np.ndarray, same: float, steps: int = 20) -> list[dict]:
    """How close to the stamped base's latent must a disguise's latent come for its revelation
    to show the symbol? For lambda = 0, 1/steps, ..., 1: decode z = (1 - lambda) E(x_b) +
    lambda E(add_symbol(x_b)) for the bases x_b [N, H, W, C]; per lambda the median D2(z,
    E(add_symbol(x_b))) over the same-class distance `same`, and the share of the decoded
    images the detector flags (and without its side test)."""
    z_b, z_s = ae.encode(x_b), ae.encode(symbol.add_symbol(x_b))
    rows = []
    for lam in np.linspace(0.0, 1.0, steps + 1):
        z = (1 - lam) * z_b + lam * z_s
        x = np.asarray(ae.decode(z))
        rows.append(
            dict(
                lam=float(lam),
                d2_over_same_class=float(np.median(feature_distance(z, z_s, x_b.ndim - 1)) / same),
                flagged=float(symbol.has_symbol(x).mean()),
                flagged_no_side_test=float(symbol.has_symbol(x, min_side=None).mean()),
            )
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--autoencoder", default=None, help="A finished train autoencoder run.")
    p.add_argument("--data", default=AutoencoderConfig().data)
    p.add_argument("--psnr", type=float, nargs="+", default=[25.0, 20.0, 17.0, 14.0])
    p.add_argument("--disguise-steps", type=int, default=600)
    p.add_argument(
        "--optimizer",
        choices=sorted(OPTIMIZERS),
        default="normalized",
        help="For Algorithm 1 and --reach: normalized (L2 steps, the steepest descent for the "
        "PSNR ball; session 35) or adam (sessions 5-22).",
    )
    p.add_argument(
        "--learning-rate", type=float, default=None, help="Default: 0.1 (normalized), 0.01."
    )
    p.add_argument(
        "--gamma-2-fraction",
        type=float,
        default=0.25,
        help="gamma_2 as a fraction of the median same-class latent distance (the bar is 1).",
    )
    p.add_argument(
        "--bases",
        choices=("all", "same-class", "nearest"),
        default="all",
        help="100 clean training digits as bases: 10 of every class, 100 of x_c's class "
        "(the symbol is then most of what separates a base's latent from E(x_c)), or the 100 "
        "of x_c's class whose latents are nearest E(x_c) (an attacker's choice of bases).",
    )
    p.add_argument(
        "--reach",
        action="store_true",
        help="Also measure what perturbations within each PSNR floor can reveal: a faint "
        "stamp, and projected ascent (--optimizer) on a score of D(E(x_d)) (--reach-score).",
    )
    p.add_argument(
        "--reach-score",
        choices=("contrast", "margin"),
        default="contrast",
        help="The score --reach ascends: symbol_score (contrast; sessions 35-36) or "
        "detector_margin (the soft minimum of the detector's margins, which needs all four "
        "sides of the square; session 37).",
    )
    p.add_argument(
        "--target",
        choices=("x_c", "stamped-bases"),
        default="x_c",
        help="Algorithm 1's copyrighted image: x_c for every disguise, or each base with the "
        "symbol stamped on it (see doc).",
    )
    p.add_argument(
        "--feature",
        choices=("encoder", "reconstruction"),
        default="encoder",
        help="Algorithm 1's feature map for D2: the encoder E (the paper's), or the "
        "revelation D(E(x)) (D2 is then the mean squared pixel difference of D(E(x_d)) and "
        "D(E(x_c)); the bars' D2 is still measured in the latent space).",
    )
    p.add_argument(
        "--ldm-disguises",
        choices=("algorithm-1", "ascent", "faint-stamp"),
        default="algorithm-1",
        help="The disguises the latent model trains on: Algorithm 1's, or (with --reach) the "
        "ascent's from the faint stamp, which maximise the revelation's symbol score (not the "
        "paper's method: a test of whether the latent model reproduces what revelations show), "
        "or no disguises but faint stamps, x_b + F (x_b stamped - x_b) with F = "
        "--faint-fraction (a control: does the latent model amplify a symbol too faint for "
        "the detector without Algorithm 1?).",
    )
    p.add_argument(
        "--faint-fraction",
        type=float,
        default=0.15,
        help="F of --ldm-disguises faint-stamp, in (0, 1].",
    )
    p.add_argument("--ldm-iterations", type=int, default=3000)
    p.add_argument(
        "--ldm-set",
        nargs="*",
        default=[],
        metavar="FIELD=VALUE",
        help="Changes to latent_ddpm_config() (sized for 7x7 latents), e.g. "
        "channel_mults=1,2 attention_resolutions=7 for 14x14 latents, or with --labels "
        "concept concept_labels=10 (the concept's images stay out of the unconditional model).",
    )
    p.add_argument(
        "--guidance",
        type=float,
        nargs="+",
        default=None,
        metavar="W",
        help="Class-conditional latent models (--labels), sampled for x_c's class or the "
        "concept with classifier-free guidance at each weight W >= 0 (default: unconditional "
        "models).",
    )
    p.add_argument(
        "--labels",
        choices=("digits", "concept"),
        default="digits",
        help="With --guidance: every image labelled with its digit, or the 100 x 20 added "
        "images (disguises, copies, and in the control the bases themselves) with a label of "
        "their own, 10, as a textual-inversion token or a DreamBooth identifier (see doc).",
    )
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--repeat", type=int, default=20, help="Copies of each disguise.")
    p.add_argument("--root", default="runs/bench-disguise")
    p.add_argument(
        "--out",
        default="benchmarks/results/disguise_mnist.json",
        help="the grids disguise_psnr*.png and disguise_ldm_*.png go to the same folder",
    )
    args = p.parse_args()
    if args.ldm_disguises == "ascent" and not args.reach:
        p.error("--ldm-disguises ascent: needs --reach")
    if not 0 < args.faint_fraction <= 1:
        p.error(f"--faint-fraction: must be in (0, 1], got {args.faint_fraction}")
    if args.ldm_iterations < 0:
        p.error(f"--ldm-iterations: must be >= 0 (0: no latent models), got {args.ldm_iterations}")
    if args.guidance is not None and min(args.guidance) < 0:
        p.error(f"--guidance: every weight must be >= 0, got {args.guidance}")
    if args.labels == "concept" and args.guidance is None:
        p.error("--labels concept: needs --guidance (an unconditional model has no labels)")
    # its iterations come from --ldm-iterations (0: none); num_classes from --guidance, --labels
    num_classes = 0 if args.guidance is None else (11 if args.labels == "concept" else 10)
    ldm_config = latent_ddpm_config(num_classes=num_classes)
    ldm_config = dataclasses.replace(
        ldm_config,
        **overrides_or_exit(
            p,
            type(ldm_config),
            args.ldm_set,
            ldm_config,
            ("iterations", "num_classes"),
            "--ldm-set",
        ),
    )
    if args.learning_rate is None:
        args.learning_rate = 0.1 if args.optimizer == "normalized" else 0.01
    plot_dir = os.path.dirname(args.out) or "."
    os.makedirs(plot_dir, exist_ok=True)
    print("command: python " + " ".join(sys.argv))
    print("machine: " + machine_line())
    out = {"command": " ".join(sys.argv)}

    ae_dir = args.autoencoder
    if ae_dir is None:
        ae_dir = os.path.join(args.root, f"autoencoder-{time.time():.0f}")
        run = run_autoencoder(AutoencoderConfig(data=args.data), run_dir=ae_dir, progress=False)
        print(run.summary())
    ae = load_autoencoder(ae_dir)
    with open(os.path.join(ae_dir, "results.json")) as f:
        out["autoencoder"] = dict(json.load(f), run=ae_dir)
    x_train, y_train, x_test, y_test = load_training_images(ae.config)

    def decoded(x):
        return np.concatenate(
            [np.asarray(ae.decode(ae.encode(x[i : i + 500]))) for i in range(0, len(x), 500)]
        )

    # 2. The symbol detector.
    stamped_test = symbol.add_symbol(x_test)
    stamped_decoded = decoded(stamped_test)
    rates = {
        "clean": symbol.has_symbol(x_test).mean(),
        "clean, decoded": symbol.has_symbol(decoded(x_test)).mean(),
        "stamped": symbol.has_symbol(stamped_test).mean(),
        "stamped, decoded": symbol.has_symbol(stamped_decoded).mean(),
        "stamped, decoded, no side test": symbol.has_symbol(stamped_decoded, min_side=None).mean(),
    }
    out["detector"] = {k: float(v) for k, v in rates.items()}
    print(
        f"symbol detector (contrast >= {symbol.THRESHOLD}, shape correlation >= "
        f"{symbol.MIN_CORRELATION}, each side of the square >= {symbol.MIN_SIDE}), fraction "
        "flagged of 1000 test digits:"
    )
    for k, v in rates.items():
        print(f"  {k}: {v:.3f}")

    # 3. x_c, bases and disguises.
    x_c = stamped_test[0]
    per_class = [np.flatnonzero(y_train == c) for c in range(10)]
    clean_idx = np.concatenate([idx[:100] for idx in per_class])
    if args.bases == "all":
        base_idx = np.concatenate([idx[100:110] for idx in per_class])
    else:
        pool = per_class[int(y_test[0])][100:]  # not among the clean training images
        if args.bases == "nearest":
            pool = pool[np.argsort(detection_scores(ae.encode, x_train[pool], x_c))]
        base_idx = pool[:100]
        if len(base_idx) < 100:
            raise ValueError(f"--bases: class {y_test[0]} has too few training digits")
    x_clean, x_b = x_train[clean_idx], x_train[base_idx]
    same = same_class_latent_distance(ae.encode, x_test, y_test)
    neg = -detection_scores(ae.encode, x_test, x_c)
    base_d2 = detection_scores(ae.encode, x_b, x_c)
    # What the symbol alone weighs in the latent: D2(E(x), E(x + symbol)) over 100 test digits.
    symbol_d2 = float(
        np.median(
            feature_distance(ae.encode(x_test[:100]), ae.encode(stamped_test[:100]), x_c.ndim)
        )
    )
    print(f"median D2 between two clean test digits of one class: {same:.4f}")
    ratio = symbol_d2 / same
    print(f"median D2 that the symbol adds to a test digit: {symbol_d2:.4f} ({ratio:.2f}x)")
    print(f"median D2(E(x_b), E(x_c)) of the bases: {np.median(base_d2):.4f}")
    out["latent_path"] = latent_path(ae, x_b, same)
    half = [r for r in out["latent_path"] if r["flagged"] >= 0.5]
    print(
        "decoded from (1 - lambda) E(x_b) + lambda E(x_b stamped): "
        + ", ".join(f"{r['lam']:.2f}: {r['flagged']:.2f}" for r in out["latent_path"][::2])
        + " flagged; half flagged "
        + (
            f"from lambda {half[0]['lam']:.2f}, D2 {half[0]['d2_over_same_class']:.3f}x the "
            "same-class distance"
            if half
            else "at no lambda"
        )
    )
    if args.target == "stamped-bases":
        targets = symbol.add_symbol(x_b)
        z_test = ae.encode(x_test)
        neg = -np.asarray(
            feature_distance(z_test[:, None], ae.encode(targets)[None], x_c.ndim)
        ).ravel()  # every clean test digit against every target
    else:
        targets = x_c
    z_targets = ae.encode(targets[None] if targets.ndim == 3 else targets)

    def latent_d2(x_d):  # the bars' D2, in the latent space whatever --feature is
        return np.asarray(feature_distance(ae.encode(x_d), z_targets, x_c.ndim))

    feature = ae.encode if args.feature == "encoder" else (lambda x: ae.decode(ae.encode(x)))
    rows, disguises = [], {}
    for floor in args.psnr:
        gamma_1 = 4.0 / 10 ** (floor / 10)
        t0 = time.perf_counter()
        r = generate_disguises(
            feature,
            x_b,
            targets,
            alpha=0.0,
            gamma_1=gamma_1,
            gamma_2=args.gamma_2_fraction * same,
            learning_rate=args.learning_rate,
            optimizer=args.optimizer,
            max_steps=args.disguise_steps,
            mse_radius=gamma_1,
        )
        seconds = time.perf_counter() - t0
        revealed = decoded(r.x_d)
        d2 = r.d2 if args.feature == "encoder" else latent_d2(r.x_d)
        row = dict(
            psnr_floor=floor,
            seconds=seconds,
            psnr_min=float(r.psnr.min()),
            d2_median=float(np.median(d2)),
            d2_over_same_class=float(np.median(d2) / same),
            below_same_class=float(np.mean(d2 < same)),
            auroc_step1=auroc(neg, -d2),
            revelation_d1_median=float(np.median(image_distance(revealed, targets))),
            revealed_symbol=float(symbol.has_symbol(revealed).mean()),
            revealed_score_median=float(np.median(symbol.symbol_score(revealed))),
            disguise_symbol=float(symbol.has_symbol(r.x_d).mean()),
            disguise_score_median=float(np.median(symbol.symbol_score(r.x_d))),
        )
        rows.append(row)
        disguises[floor] = r.x_d
        save_grid(
            np.concatenate([x_b[::10][:8], r.x_d[::10][:8], revealed[::10][:8]]),
            os.path.join(plot_dir, f"disguise_psnr{floor:g}.png"),
        )
        print(json.dumps(row), flush=True)
    clean_reveal = revelation_distances(ae.encode, ae.decode, x_test, x_c)
    out.update(
        same_class_d2=same,
        symbol_d2_median=symbol_d2,
        base_d2_median=float(np.median(base_d2)),
        clean_revelation_d1_median=float(np.median(clean_reveal)),
        target=args.target,
        ldm_disguises=args.ldm_disguises,
        disguises=rows,
    )
    print(
        "| PSNR floor | min PSNR | D2 / same-class | share below same-class | AUROC (step 1) "
        "| D1(D(E(x_d)), x_c) | symbol in D(E(x_d)) | symbol in x_d itself |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['psnr_floor']:g} dB | {r['psnr_min']:.2f} | {r['d2_over_same_class']:.3f} | "
            f"{r['below_same_class']:.2f} | {r['auroc_step1']:.3f} | "
            f"{r['revelation_d1_median']:.3f} | {r['revealed_symbol']:.2f} | "
            f"{r['disguise_symbol']:.2f} |"
        )
    if any(r["disguise_symbol"] > 0 for r in rows):
        print("  (a disguise that shows the symbol itself is no disguise: see the last column)")
    print(f"clean test digits: median D1(D(E(x)), x_c) {np.median(clean_reveal):.3f}")
    if args.reach:
        optimizer = OPTIMIZERS[args.optimizer](args.learning_rate)
        out["reach"] = []
        score = symbol.detector_margin if args.reach_score == "margin" else symbol.symbol_score
        for floor in args.psnr:
            row, tries = reach(ae, x_b, floor, args.disguise_steps, optimizer, plot_dir, score)
            out["reach"].append(row)
            if args.ldm_disguises == "ascent":
                disguises[floor] = tries["ascent from the faint stamp"]
    if args.ldm_disguises == "faint-stamp":  # not disguises: a control for the latent models
        disguises[args.psnr[0]] = x_b + args.faint_fraction * (symbol.add_symbol(x_b) - x_b)
    if args.ldm_disguises != "algorithm-1":  # the bars, for the images the latent model gets
        x_d = disguises[args.psnr[0]]
        d2, revealed = latent_d2(x_d), decoded(x_d)
        key = args.ldm_disguises.replace("-", "_") + "_disguises"
        out[key] = dict(
            psnr_min=float(psnr(x_d, x_b).min()),
            d2_over_same_class=float(np.median(d2) / same),
            below_same_class=float(np.mean(d2 < same)),
            auroc_step1=auroc(neg, -d2),
            disguise_symbol=float(symbol.has_symbol(x_d).mean()),
            disguise_score_median=float(np.median(symbol.symbol_score(x_d))),
            revealed_symbol=float(symbol.has_symbol(revealed).mean()),
            revealed_score_median=float(np.median(symbol.symbol_score(revealed))),
        )
        print(f"{key}: {json.dumps(out[key])}", flush=True)

    # 5. Latent diffusion: disguises, control, direct copies.
    if args.ldm_iterations:
        floor = args.psnr[0]
        y_clean, y_b, y_c = y_train[clean_idx], y_train[base_idx], int(y_test[0])
        conditional, concept = args.guidance is not None, args.labels == "concept"
        n_added = len(x_b) * args.repeat  # the disguises' (or copies') copies in a training set
        # what the added images are labelled: the concept's own label 10, or their digits
        y_added = np.full(n_added, 10) if concept else np.repeat(y_b, args.repeat)
        copies = (
            np.repeat(x_c[None], n_added, axis=0)
            if args.target == "x_c"
            else np.repeat(targets, args.repeat, axis=0)
        )
        y_copies = np.full(n_added, y_c) if args.target == "x_c" and not concept else y_added
        control = (  # with a concept label: the same bases as the disguises, undisguised
            (
                np.concatenate([x_clean, np.repeat(x_b, args.repeat, axis=0)]),
                np.concatenate([y_clean, y_added]),
            )
            if concept
            else (x_clean, y_clean)
        )
        sets = {  # name -> (images, their labels)
            "control (1000 clean" + (" + the bases x 20)" if concept else ")"): control,
            (
                f"with faint stamps ({args.faint_fraction:g} of the symbol)"
                if args.ldm_disguises == "faint-stamp"
                else f"with disguises ({floor:g} dB)"
            ): (
                np.concatenate([x_clean, np.repeat(disguises[floor], args.repeat, axis=0)]),
                np.concatenate([y_clean, y_added]),
            ),
            "with copies of x_c": (
                np.concatenate([x_clean, copies]),
                np.concatenate([y_clean, y_copies]),
            ),
        }
        config = dataclasses.replace(ldm_config, iterations=args.ldm_iterations)
        y_sample = 10 if concept else y_c
        out["ldm"] = {}
        for name, (images, labels) in sets.items():
            t0 = time.perf_counter()
            ldm = train_latent_ddpm(ae, images, config, labels=labels if conditional else None)
            train_s = time.perf_counter() - t0
            slug = name.split(" ")[0] + ("_disguises" if "disguises" in name else "")
            slug = slug + ("_faint_stamps" if "faint" in name else "")
            slug = slug + ("_copies" if "copies" in name else "")
            out["ldm"][name] = dict(
                train_images=len(images),
                train_seconds=train_s,
                final_loss=float(ldm.losses[-100:].mean()),
            )
            for w in args.guidance or [None]:  # None: an unconditional model, unguided
                labels = None if w is None else np.full(args.samples, y_sample)
                samples = ldm.sample(args.samples, seed=1, labels=labels, guidance=w)
                rates = dict(
                    symbol_fraction=float(symbol.has_symbol(samples).mean()),
                    no_side_test_fraction=float(symbol.has_symbol(samples, min_side=None).mean()),
                    contrast_only_fraction=float(
                        np.mean(symbol.symbol_score(samples) >= symbol.THRESHOLD)
                    ),
                )
                if w is None:
                    out["ldm"][name].update(rates)
                else:  # x_c's class or the concept: what guidance toward it draws
                    out["ldm"][name].setdefault("guided", {})[f"{w:g}"] = rates
                suffix = "" if w is None else f"_w{w:g}"
                save_grid(samples[:64], os.path.join(plot_dir, f"disguise_ldm_{slug}{suffix}.png"))
                print(
                    f"LDM {name}: {len(images)} images, {train_s:.0f} s"
                    + ("" if w is None else f", label {y_sample} with guidance w = {w:g}")
                    + f": symbol in {rates['symbol_fraction']:.3f} of {args.samples} samples "
                    f"(without the side test: {rates['no_side_test_fraction']:.3f}; contrast "
                    f"alone: {rates['contrast_only_fraction']:.3f})",
                    flush=True,
                )
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
