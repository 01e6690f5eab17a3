"""DDPM training and sampling: `rlax-zoo train ddpm`, `rlax-zoo sample --run RUN_DIR`.

Training is Algorithm 1 of Ho et al. 2020 (`diffusion.ddpm.simple_loss`) on the U-Net of
`diffusion.unet`, with the paper's optimisation choices scaled to a CPU: Adam, a linear
learning-rate warm-up, gradient clipping at norm 1 and an exponential moving average of the
parameters that is used for sampling. The defaults depart from the paper where that was
measured to train faster in an hour of CPU (benchmarks/RESULTS.md): learning rate 1e-3
instead of 2e-4, no dropout instead of 0.1, and the Min-SNR-5 weighting of Hang et al. 2023
instead of the uniform L_simple (`--learning-rate 2e-4 --dropout 0.1 --min-snr-gamma 0`
restores the paper's choices). The whole step (minibatch draw, loss, update, EMA) is
one jitted function with its state donated; a chunk of `eval_every` steps calls it from
Python rather than inside `lax.scan`, because XLA:CPU runs a convolution's gradient inside a
loop about 12x slower (measured: 6 s against 0.5 s per step of 64 images). The sampler's
scans hold only forward passes, which loops do not slow down. Chunks are driven by the shared
run-folder loop (config.json, metrics.csv, checkpoints, resume, Ctrl-C). At the end the run
writes samples.png (a grid of `sample_count` samples from the EMA parameters).

With `num_classes` > 0 the U-Net is class-conditional and trained for classifier-free
guidance (Ho & Salimans 2022): each label is replaced by a null label with chance
`label_dropout`, so one network is both the conditional and the unconditional model, and
sampling a class mixes the two with the guidance weight w (`diffusion.ddpm.
classifier_free_guidance`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffusion.data import class_split, load_npz_images, to_uint8
from diffusion.ddpm import (
    ANCESTRAL_SIGMAS,
    DDIM_SPACINGS,
    PREDICTIONS,
    ancestral_sample,
    classifier_free_guidance,
    cosine_schedule,
    ddim_sample,
    eps_from_v,
    linear_schedule,
    simple_loss,
)
from diffusion.unet import UNet
from rlax_zoo.checkpointing import CheckpointError, restore_run_state
from rlax_zoo.config import ConfigError, option, time_budget_option
from rlax_zoo.runner import (
    ChunkRun,
    default_run_dir,
    drive_config_chunks,
    prepare_run_dir,
    write_results,
)


@dataclasses.dataclass(frozen=True)
class DDPMConfig:
    data: str = option(
        "../shared/data/images/mnist_5k.npz", ".npz with images x [N, H, W(, C)] and labels y."
    )
    train_per_class: int = option(
        400, "Images per class to train on (the rest of each class is the test split).", low=1
    )
    seed: int = option(0, "Random seed.", low=0)
    num_steps: int = option(1000, "Diffusion steps T.", low=1)
    schedule: str = option("linear", "Noise schedule.", choices=("linear", "cosine"))
    beta_1: float = option(1e-4, "First beta of the linear schedule.", low=0.0, low_open=True)
    beta_T: float = option(
        0.02, "Last beta of the linear schedule.", low=0.0, high=1.0, low_open=True, high_open=True
    )
    base_channels: int = option(16, "U-Net base width.", low=8)
    channel_mults: tuple[int, ...] = option((1, 2, 2), "U-Net width multipliers per level.", low=1)
    num_res_blocks: int = option(1, "Residual blocks per U-Net level.", low=1)
    attention_resolutions: tuple[int, ...] = option(
        (7,), "Feature-map sizes with self-attention.", low=1
    )
    dropout: float = option(
        0.0,
        "Dropout in the residual blocks (Ho et al.: 0.1 on CIFAR-10; it slows the short CPU "
        "runs here, benchmarks/RESULTS.md).",
        low=0.0,
        high=1.0,
        high_open=True,
    )
    batch_size: int = option(64, "Minibatch size.", low=1)
    learning_rate: float = option(
        1e-3,
        "Adam learning rate (Ho et al.: 2e-4 for 800k steps; 1e-3 without dropout reached "
        "the same sample quality in a third of the steps on MNIST-5k, benchmarks/RESULTS.md).",
        low=0.0,
        low_open=True,
    )
    warmup_steps: int = option(100, "Linear learning-rate warm-up steps.", low=0)
    lr_schedule: str = option(
        "constant",
        "Learning rate after the warm-up: constant, or cosine decay to 0 at `iterations` "
        "(pick `iterations` to fit a time budget; a resume cannot extend it).",
        choices=("constant", "cosine"),
    )
    max_grad_norm: float = option(1.0, "Global gradient-norm clip.", low=0.0, low_open=True)
    min_snr_gamma: float = option(
        5.0,
        "Min-SNR-gamma loss weighting (Hang et al. 2023): each step's error weighted by "
        "min(SNR_t, gamma) / SNR_t; 0: Ho et al.'s uniform L_simple.",
        low=0.0,
    )
    prediction: str = option(
        "eps",
        "What the U-Net outputs: eps (Ho et al.) or v = sqrt(ab) eps - sqrt(1 - ab) x0 "
        "(Salimans & Ho 2022); the samplers use the eps that v implies.",
        choices=PREDICTIONS,
    )
    num_classes: int = option(
        0,
        "Class-conditional U-Net over the data's labels y in 0..num_classes-1, trained for "
        "classifier-free guidance (Ho & Salimans 2022); 0: unconditional.",
        low=0,
    )
    label_dropout: float = option(
        0.1,
        "With num_classes: the chance that a training label is replaced by the null label, "
        "which trains the unconditional model that guidance needs (Ho & Salimans: 0.1-0.2).",
        low=0.0,
        high=1.0,
        high_open=True,
    )
    concept_labels: tuple[int, ...] = option(
        (),
        "With num_classes: labels never replaced by the null label, so that their images stay "
        "out of the unconditional model, as a concept learned by textual inversion or "
        "DreamBooth stays out of the pre-trained model that guidance contrasts it with.",
        low=0,
    )
    guidance: float = option(
        0.0,
        "With num_classes: the guidance weight w of the final grid's samples, eps = (1 + w) "
        "eps(x, y) - w eps(x, null) (Ho & Salimans 2022, eq. 6); 0: the conditional model.",
        low=0.0,
    )
    ema_decay: float = option(
        0.999, "EMA decay of the sampling parameters.", low=0.0, high=1.0, high_open=True
    )
    iterations: int = option(6000, "Adam steps.", low=1)
    time_budget_s: float = time_budget_option()
    eval_every: int = option(250, "Steps per chunk (one log row and checkpoint each).", low=1)
    checkpoint_every: int = option(1, "Checkpoint every this many chunks.", low=1)
    sample_count: int = option(64, "Samples in the final grid (0: none).", low=0)
    sampler: str = option("ddpm", "Sampler for the final grid.", choices=("ddpm", "ddim"))
    sample_steps: int = option(50, "Network calls of the DDIM sampler.", low=1)
    sample_sigma: str = option(
        "beta",
        "The ancestral sampler's noise (Ho et al. 2020, Sec. 3.2): beta (sigma_t^2 = beta_t) or "
        "posterior (beta-tilde_t, eq. 7; DDIM with eta = 1 at every step).",
        choices=ANCESTRAL_SIGMAS,
    )
    sample_eta: float = option(
        0.0,
        "DDIM's eta (Song et al. 2021, eq. 16): 0 is deterministic DDIM, 1 adds DDPM's posterior "
        "noise at every strided step.",
        low=0.0,
        high=1.0,
    )
    sample_spacing: str = option(
        "uniform",
        "DDIM's sub-sequence of timesteps: uniform ends at T; leading (Song et al.'s released "
        "code) never calls the network at T, which lowered DDIM-50's FD by 11-21 percent with "
        "schedule=cosine and changed nothing with the linear one (benchmarks/RESULTS.md).",
        choices=DDIM_SPACINGS,
    )
    sample_rederive_eps: bool = option(
        True,
        "DDIM with clip_x0: True uses the eps that the clipped x0-hat implies in the direction "
        "term (GLIDE); False keeps the network's eps (diffusers' default: better FD at 50 "
        "steps on one run here, worse on another, far worse at 200, benchmarks/RESULTS.md).",
    )
    clip_x0: float = option(
        1.0,
        "Clip x0-hat to [-c, c] at every sampling step, as Ho et al.'s released sampler does "
        "(images live in [-1, 1]); 0: no clipping. Without it DDIM-50 turned about one sample "
        "in ten into noise (benchmarks/RESULTS.md).",
        low=0.0,
    )

    @property
    def warmup_length(self) -> int:
        """Steps of the linear warm-up; warmup_steps=0 is a 1-step warm-up (from 0 at step 0)."""
        return max(self.warmup_steps, 1)

    def check(self):
        if self.schedule == "linear" and self.beta_1 > self.beta_T:
            raise ConfigError(f"beta_1: must be <= beta_T ({self.beta_T}), got {self.beta_1}")
        if self.lr_schedule == "cosine" and self.iterations <= self.warmup_length:
            raise ConfigError(
                f"iterations: the cosine decay needs more than max(warmup_steps, 1) "
                f"({self.warmup_length}), got {self.iterations}"
            )
        if self.concept_labels and not self.num_classes:
            raise ConfigError("concept_labels: need a class-conditional model (num_classes > 0)")
        if self.concept_labels and not max(self.concept_labels) < self.num_classes:
            raise ConfigError(
                f"concept_labels: must be labels in 0..num_classes - 1 ({self.num_classes - 1}), "
                f"got {self.concept_labels}"
            )
        if self.num_classes and self.guidance > 0 and self.label_dropout == 0:
            raise ConfigError(
                "label_dropout: guidance > 0 needs an unconditional model, so label_dropout "
                "must be > 0, got 0"
            )
        if self.sample_steps > self.num_steps:
            raise ConfigError(
                f"sample_steps: must be <= num_steps ({self.num_steps}), got {self.sample_steps}"
            )


class TrainState(NamedTuple):
    params: dict
    ema_params: dict
    opt_state: optax.OptState
    key: jax.Array
    step: jax.Array  # [] int32


class DDPMTrainer(NamedTuple):
    config: DDPMConfig
    net: UNet
    schedule: object
    init: callable  # key -> TrainState
    train_chunk: callable  # (TrainState, n) -> (TrainState, {"loss": [n]}); not jittable
    # (params, key, n static, sampler static, steps static, labels [n] | None, guidance static
    # | None) -> [n, H, W, C]
    sample: callable


def make_schedule(config: DDPMConfig):
    """The config's noise schedule: the paper's linear betas (Ho et al. 2020, Sec. 4) or the
    cosine alpha-bar of Nichol & Dhariwal 2021 (eq. 17), T = num_steps entries."""
    if config.schedule == "cosine":
        return cosine_schedule(config.num_steps)
    return linear_schedule(config.num_steps, config.beta_1, config.beta_T)


def learning_rate_schedule(config: DDPMConfig) -> optax.Schedule:
    """Step n -> Adam's learning rate: linear from 0 to `learning_rate` over
    w = `config.warmup_length` steps, then constant, or (`lr_schedule="cosine"`)
    lr * (1 + cos(pi (n - w) / (iterations - w))) / 2 down to 0 at n = `iterations`
    (Loshchilov & Hutter 2017 without restarts)."""
    warmup = config.warmup_length
    if config.lr_schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0, config.learning_rate, warmup, config.iterations, 0.0
        )
    return optax.warmup_constant_schedule(0.0, config.learning_rate, warmup)


def check_labels(y, n: int, num_classes: int, argument: str) -> np.ndarray:
    """y as an int32 array [n] of labels in 0..num_classes-1; anything else raises
    ConfigError naming `argument`."""
    y = np.asarray(y)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise ConfigError(f"{argument}: must be {n} integer labels, got {y.dtype} {y.shape}")
    if n and (y.min() < 0 or y.max() >= num_classes):
        raise ConfigError(
            f"{argument}: labels must be in 0..{num_classes - 1} (num_classes {num_classes}), "
            f"got {y.min()}..{y.max()}"
        )
    return y.astype(np.int32)


def drop_labels(key, y_B, p: float, null_label: int, keep=()) -> jax.Array:
    """y_B [B] with each label replaced by `null_label` with chance p, except the labels in
    `keep` (an int array or tuple), which are never replaced: the label dropout of Ho &
    Salimans 2022 (Algorithm 1, p_uncond), which trains one network as both the conditional
    and the unconditional model."""
    drop = jax.random.bernoulli(key, p, y_B.shape)
    if len(keep):
        drop = drop & ~jnp.isin(y_B, jnp.asarray(keep))
    return jnp.where(drop, null_label, y_B)


def make_ddpm_trainer(
    config: DDPMConfig, x_train: np.ndarray, y_train: np.ndarray | None = None
) -> DDPMTrainer:
    """init / train_chunk / sample for DDPM on images x_train [N, H, W, C] in [-1, 1]; with
    `config.num_classes` > 0, class-conditional on y_train [N] (each label replaced by the
    null label with chance `label_dropout`: Ho & Salimans 2022, Algorithm 1), and `sample`
    takes labels [n] (None: the unconditional model) and the guidance weight w (None: the
    config's; Ho & Salimans, eq. 6 and Algorithm 2)."""
    if x_train.ndim != 4:
        raise ConfigError(f"data: images must be [N, H, W, C], got {x_train.shape}")
    K = config.num_classes
    if K:
        if y_train is None:
            raise ConfigError(f"num_classes: {K} needs the training labels y_train")
        y_data = jnp.asarray(check_labels(y_train, len(x_train), K, "y_train"))
        concepts = jnp.asarray(config.concept_labels, jnp.int32)
    elif y_train is not None:
        raise ConfigError("y_train: labels need num_classes > 0 (a class-conditional model)")
    levels = len(config.channel_mults)
    H, W = x_train.shape[1:3]
    if H % 2 ** (levels - 1) or W % 2 ** (levels - 1):
        raise ConfigError(
            f"channel_mults: {levels} levels need image sides divisible by "
            f"{2 ** (levels - 1)}, got {H}x{W}"
        )
    net = UNet(
        base_channels=config.base_channels,
        channel_mults=config.channel_mults,
        num_res_blocks=config.num_res_blocks,
        attention_resolutions=config.attention_resolutions,
        groups=math.gcd(8, config.base_channels),
        dropout=config.dropout,
        num_classes=K,
    )
    schedule = make_schedule(config)
    data = jnp.asarray(x_train)
    optimizer = optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm), optax.adam(learning_rate_schedule(config))
    )

    def as_eps(out, x, t):  # the network's output as a noise prediction
        return out if config.prediction == "eps" else eps_from_v(schedule, x, t, out)

    def init(key):
        k_params, k_run = jax.random.split(key)
        params = net.init(k_params, data[:1], jnp.ones((1,), jnp.int32))["params"]
        ema = jax.tree.map(jnp.copy, params)  # a separate buffer (the state is donated)
        return TrainState(params, ema, optimizer.init(params), k_run, jnp.zeros((), jnp.int32))

    def one_step(state, _):
        key, k_idx, k_loss, k_drop = jax.random.split(state.key, 4)
        idx = jax.random.randint(k_idx, (config.batch_size,), 0, data.shape[0])
        x0, y = data[idx], None
        if K:  # a separate key: the unconditional run's key stream is unchanged
            y = drop_labels(
                jax.random.fold_in(k_idx, 1), y_data[idx], config.label_dropout, K, concepts
            )

        def loss_fn(params):
            def eps_fn(x, t):
                rngs = {"dropout": k_drop}
                out = net.apply({"params": params}, x, t, y, train=True, rngs=rngs)
                return as_eps(out, x, t)

            return simple_loss(
                eps_fn, schedule, x0, k_loss, config.min_snr_gamma or None, config.prediction
            )

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        # EMA with the usual warm-up, decay min(ema_decay, (1 + n) / (10 + n)) at step n:
        # with a fixed 0.999 the random initial weights would still hold 0.999^n of the
        # average (22% after 1500 steps), and samples from it are noise
        n = state.step.astype(jnp.float32)
        d = jnp.minimum(config.ema_decay, (1.0 + n) / (10.0 + n))
        ema = jax.tree.map(lambda e, p: d * e + (1 - d) * p, state.ema_params, params)
        return TrainState(params, ema, opt_state, key, state.step + 1), {"loss": loss}

    step_jit = jax.jit(lambda s: one_step(s, None), donate_argnums=0)

    def train_chunk(state, n):
        # A Python loop over the jitted step, not a lax.scan: on XLA:CPU (jax 0.10) the
        # gradient of a convolutional net inside a scan or while loop runs about 12x slower
        # than the same step jitted alone (6 s against 0.5 s for a batch of 64 here).
        losses = []
        for _ in range(n):
            state, m = step_jit(state)
            losses.append(m["loss"])
        return state, {"loss": jnp.stack(losses)}

    def sample(params, key, n, sampler="ddpm", steps=50, labels=None, guidance=None):
        def eps_fn_y(x, t, y):
            return as_eps(net.apply({"params": params}, x, t, y, train=False), x, t)

        if labels is None:  # the unconditional model (for a conditional net: the null label)
            eps_fn = lambda x, t: eps_fn_y(x, t, None)  # noqa: E731
        elif not K:
            raise ConfigError("labels: an unconditional model (num_classes 0) takes none")
        else:
            w = config.guidance if guidance is None else guidance
            eps_fn = classifier_free_guidance(eps_fn_y, labels, K, w)
        shape = (n,) + tuple(data.shape[1:])
        clip = config.clip_x0 or None
        if sampler == "ddim":
            return ddim_sample(
                eps_fn,
                schedule,
                shape,
                key,
                num_sample_steps=steps,
                eta=config.sample_eta,
                clip_x0=clip,
                spacing=config.sample_spacing,
                rederive_eps=config.sample_rederive_eps,
            )
        return ancestral_sample(
            eps_fn, schedule, shape, key, sigma=config.sample_sigma, clip_x0=clip
        )

    return DDPMTrainer(config, net, schedule, init, train_chunk, sample)


def load_training_images(config):
    """(x_train, y_train, x_test, y_test) of a config with `data` and `train_per_class`."""
    x, y = load_npz_images(config.data)
    return class_split(x, y, config.train_per_class)


@dataclasses.dataclass
class DDPMRun(ChunkRun):
    def describe(self) -> str:
        r = self.results
        return (
            f"done in {r['train_seconds']:.0f} s: {r['iterations']} steps, final loss "
            f"{r['final_loss']:.4f}; samples in {r.get('samples_png', '(none)')}"
        )


def run_ddpm(
    config: DDPMConfig | None = None,
    run_dir: str | None = None,
    resume: str | None = None,
    progress: bool = True,
    max_chunks: int | None = None,
) -> DDPMRun:
    """Train DDPM in a run folder (see the module doc); returns the run's results."""
    default = default_run_dir("ddpm", config or DDPMConfig(), label="")
    config, run_dir, (x_train, y_train, _, _) = prepare_run_dir(
        DDPMConfig, config, run_dir, resume, default, load_training_images
    )
    trainer = make_ddpm_trainer(config, x_train, y_train if config.num_classes else None)

    loop = drive_config_chunks(
        run_dir,
        config,
        trainer.init(jax.random.PRNGKey(config.seed)),
        trainer.train_chunk,
        chunk_logger("ddpm", config.iterations, "loss", progress),
        resume is not None,
        max_chunks,
    )
    results = {}
    if not loop.interrupted:
        more = dict(final_loss=float(loop.rows[-1]["loss"]) if loop.rows else float("nan"))
        if config.sample_count:
            path = os.path.join(run_dir, "samples.png")
            samples = sample_images(
                trainer,
                loop.state.ema_params,
                config.sample_count,
                config.sampler,
                config.sample_steps,
                seed=config.seed,
                labels=grid_labels(config, config.sample_count),
            )
            save_grid(samples, path)
            more["samples_png"] = path
        results = write_results(run_dir, loop, int(loop.state.step), **more)
    return DDPMRun(run_dir, results, loop.rows, loop.interrupted, loop.state)


def grid_labels(config: DDPMConfig, n: int, label: int | None = None) -> np.ndarray | None:
    """The labels [n] of a sample grid: `label` for all, or 0, 1, .., K-1, 0, .. (K =
    num_classes); None for an unconditional model."""
    if not config.num_classes:
        if label is not None:
            raise ConfigError("label: an unconditional run (num_classes 0) takes no label")
        return None
    if label is not None:
        return check_labels(np.full(n, label), n, config.num_classes, "label")
    return np.arange(n, dtype=np.int32) % config.num_classes


def chunk_logger(label: str, total: int, shown: str, progress: bool):
    """An `after_chunk` for `drive_chunks`: one metrics.csv row per chunk with the chunk's mean
    of every metric, steps/s and the training time; prints `shown` when `progress`."""

    def after_chunk(state, chunk, metrics, dt, total_seconds):
        n = len(next(iter(metrics.values())))
        row = dict(chunk=chunk, iteration=int(state.step))
        row.update({k: float(np.mean(v)) for k, v in metrics.items()})
        row.update(iterations_per_sec=n / dt, train_seconds=total_seconds)
        if progress:
            print(
                f"{label}: step {row['iteration']}/{total} {shown} {row[shown]:.5f} "
                f"({row['iterations_per_sec']:.1f} steps/s)",
                flush=True,
            )
        return [row]

    return after_chunk


def sample_images(
    trainer,
    params,
    n,
    sampler="ddpm",
    steps=50,
    seed=0,
    batch_size=256,
    labels=None,
    guidance=None,
):
    """n samples [n, H, W, C] in [-1, 1] from `params`, drawn in jitted batches; labels [n]
    and the guidance weight as in `make_ddpm_trainer`'s sample (None: unconditional)."""
    if labels is not None and trainer.config.num_classes:
        labels = check_labels(labels, n, trainer.config.num_classes, "labels")
    fn = jax.jit(trainer.sample, static_argnums=(2, 3, 4, 6))
    out, key = [], jax.random.PRNGKey(seed)
    for i in range(0, n, batch_size):
        key, k = jax.random.split(key)
        y = None if labels is None else labels[i : i + batch_size]
        out.append(np.asarray(fn(params, k, min(batch_size, n - i), sampler, steps, y, guidance)))
    return np.concatenate(out)


def make_output_dir(folder: str, argument: str) -> None:
    """Create `folder` (and its parents) for a command's output before its work starts; a
    folder that cannot be made raises ConfigError naming `argument`."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{argument}: cannot create folder {folder!r} ({e.strerror})") from None


def save_grid(images: np.ndarray, path: str) -> None:
    """A square-ish grid PNG of NHWC images in [-1, 1]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    imgs = to_uint8(images)
    n, H, W, C = imgs.shape
    cols = int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    grid = np.zeros((rows * (H + 1) + 1, cols * (W + 1) + 1, C), np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        grid[1 + r * (H + 1) : 1 + r * (H + 1) + H, 1 + c * (W + 1) : 1 + c * (W + 1) + W] = imgs[i]
    plt.imsave(path, grid[..., 0] if C == 1 else grid, cmap="gray" if C == 1 else None)


def sample_from_run(
    run_dir: str,
    n: int = 64,
    sampler: str = "ddpm",
    steps: int = 50,
    seed: int = 0,
    out: str | None = None,
    eta: float | None = None,
    spacing: str | None = None,
    rederive_eps: bool | None = None,
    sigma: str | None = None,
    label: int | None = None,
    guidance: float | None = None,
) -> tuple[str, np.ndarray]:
    """Load a run's newest checkpoint and write a grid of n samples (EMA parameters). eta,
    spacing and rederive_eps, when given, replace the run's sample_eta, sample_spacing and
    sample_rederive_eps (DDIM only); sigma replaces its sample_sigma (ancestral only). For a
    class-conditional run, every sample is of class `label` (None: the classes in turn), with
    guidance weight `guidance` (None: the run's).

    Returns:
      (the PNG's path, the samples [n, H, W, C] in [-1, 1]).
    """
    from rlax_zoo import config as config_lib

    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        raise CheckpointError(f"run: {run_dir!r} is not a run folder (no config.json)")
    with open(path) as f:
        config = config_lib.from_json(DDPMConfig, f.read(), path)
    config = config_lib.replace_given(
        config,
        sample_eta=eta,
        sample_spacing=spacing,
        sample_rederive_eps=rederive_eps,
        sample_sigma=sigma,
        guidance=guidance,
    )
    if guidance is not None and not config.num_classes:
        raise ConfigError("guidance: an unconditional run (num_classes 0) takes no guidance")
    if n < 1:
        raise ConfigError(f"n: must be >= 1, got {n}")
    if sampler not in ("ddpm", "ddim"):
        raise ConfigError(f"sampler: must be 'ddpm' or 'ddim', got {sampler!r}")
    if not 1 <= steps <= config.num_steps:
        raise ConfigError(f"steps: must be in [1, {config.num_steps}], got {steps}")
    out = out or os.path.join(run_dir, f"samples-{sampler}-{n}.png")
    labels = grid_labels(config, n, label)
    make_output_dir(os.path.dirname(os.path.abspath(out)), "out")  # before minutes of sampling
    x_train, y_train, _, _ = load_training_images(config)
    trainer = make_ddpm_trainer(config, x_train, y_train if config.num_classes else None)
    template = trainer.init(jax.random.PRNGKey(config.seed))
    params = restore_run_state(run_dir, template)[0].ema_params
    samples = sample_images(trainer, params, n, sampler, steps, seed, labels=labels)
    save_grid(samples, out)
    return out, samples
