"""A small latent diffusion model (Rombach et al. 2022) on CPU: the autoencoder's training
(`rlax-zoo train autoencoder`), DDPM in its latent space, and the disguise command
(`rlax-zoo disguise`, Lu et al. 2024, Algorithm 1).

The autoencoder (`diffusion.autoencoder`) is trained on the clean training images with one
augmentation: with probability `mark_probability` an image gets a random 7x7 binary mark
stamped at a random place (bright, or with `mark_low` < 1 of a random value in
[mark_low, 1]). A latent diffusion model's autoencoder is pre-trained on far broader data
than the diffusion model and reconstructs content that its training set lacks; the marks give
this small one that property (without them, the symbol of the disguise experiment, which no
clean digit has, is reconstructed too faintly to see).

The latent DDPM is `diffusion.train`'s DDPM (U-Net, Algorithm 1, EMA) trained on
E(x) / scale, where `scale` is the standard deviation of the training latents (Rombach et
al.'s scale factor); samples are decoded with D(scale * z).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffusion.autoencoder import Autoencoder, autoencoder_loss, check_norm_groups
from diffusion.data import ImageDataError, to_model_range
from diffusion.train import (
    DDPMConfig,
    chunk_logger,
    load_training_images,
    make_ddpm_trainer,
    make_output_dir,
    sample_images,
)
from rlax_zoo import config as config_lib
from rlax_zoo.checkpointing import CheckpointError, restore_run_state
from rlax_zoo.config import ConfigError, option, time_budget_option
from rlax_zoo.runner import (
    ChunkRun,
    chunk_sizes,
    default_run_dir,
    drive_config_chunks,
    prepare_run_dir,
    write_results,
)


@dataclasses.dataclass(frozen=True)
class AutoencoderConfig:
    data: str = option(
        "../shared/data/images/mnist_5k.npz", ".npz with images x [N, H, W(, C)] and labels y."
    )
    train_per_class: int = option(
        400, "Images per class to train on (the rest of each class is the test split).", low=1
    )
    seed: int = option(0, "Random seed.", low=0)
    widths: tuple[int, ...] = option((16, 32), "Channels of each stride-2 stage.", low=1)
    # The defaults (2 latent channels, 2 residual blocks, 3600 steps; 4, 0 and 1200 before
    # session 38) are the autoencoder of the disguise experiment's measurements since session
    # 37 (benchmarks/RESULTS.md): it decodes stamped digits with the symbol (0.95-0.99 of them
    # detected) and reconstructs test digits at about 29 dB.
    latent_channels: int = option(2, "Latent channels.", low=1)
    res_blocks: int = option(
        2, "Residual blocks (group norm) after each stage, as in Rombach et al.'s design.", low=0
    )
    attention: bool = option(False, "Self-attention at the lowest resolution (both halves).")
    latent_penalty: float = option(1e-4, "Weight of the L2 term on the latents.", low=0.0)
    latent_noise: float = option(
        0.0,
        "Gaussian noise added to the latents before decoding in training, in units of the "
        "batch's latent standard deviation (0: none).",
        low=0.0,
    )
    mark_probability: float = option(
        0.5, "Probability of stamping a random 7x7 mark on a training image.", low=0.0, high=1.0
    )
    mark_low: float = option(
        1.0,
        "A mark's value is drawn uniformly from [mark_low, 1] (1: bright marks only; lower "
        "values teach the autoencoder faint marks too).",
        low=-1.0,
        high=1.0,
    )
    batch_size: int = option(64, "Minibatch size.", low=1)
    learning_rate: float = option(1e-3, "Adam learning rate.", low=0.0, low_open=True)
    iterations: int = option(3600, "Adam steps.", low=1)
    time_budget_s: float = time_budget_option()
    eval_every: int = option(200, "Steps per chunk (one log row and checkpoint each).", low=1)
    checkpoint_every: int = option(1, "Checkpoint every this many chunks.", low=1)

    def check(self):
        if not self.widths:
            raise ConfigError("widths: need at least one stride-2 stage, got ()")


class AETrainState(NamedTuple):
    params: dict
    opt_state: optax.OptState
    key: jax.Array
    step: jax.Array  # [] int32


class LoadedAutoencoder(NamedTuple):
    """A trained autoencoder: `encode(x [B, H, W, C]) -> z`, `decode(z) -> x`, both jitted;
    `scale` is the standard deviation of the training latents."""

    config: AutoencoderConfig
    model: Autoencoder
    params: dict
    scale: float
    encode: callable
    decode: callable


def random_marks(
    key: jax.Array, x_BHWC: jax.Array, probability: float, low: float = 1.0
) -> jax.Array:
    """The autoencoder's training augmentation: x_BHWC [B, H, W, C] (H, W >= 7) with, per
    image and with probability `probability`, a random 7x7 binary pattern (pixels on with
    probability 1/2) set to one value at a uniformly random place; same shape out. The value
    is drawn per image uniformly from [low, 1] (low = 1: always bright)."""
    B, H, W, C = x_BHWC.shape
    k_pattern, k_place, k_use, k_value = jax.random.split(key, 4)
    pattern = jax.random.bernoulli(k_pattern, 0.5, (B, 7, 7, C))
    place = jax.random.randint(k_place, (B, 2), 0, jnp.array([H - 6, W - 6]))

    def stamp(p, at):
        return jax.lax.dynamic_update_slice(jnp.zeros((H, W, C), bool), p, (at[0], at[1], 0))

    marks = jax.vmap(stamp)(pattern, place)
    use = jax.random.bernoulli(k_use, probability, (B, 1, 1, 1))
    value = jax.random.uniform(k_value, (B, 1, 1, 1), minval=low, maxval=1.0)
    return jnp.where(marks & use, value, x_BHWC)


def make_autoencoder_trainer(config: AutoencoderConfig, x_train: np.ndarray):
    """(model, init(key) -> AETrainState, train_chunk(state, n) -> (state, metrics))."""
    levels = len(config.widths)
    H, W = x_train.shape[1:3]
    if H % 2**levels or W % 2**levels:
        raise ConfigError(
            f"widths: {levels} stride-2 stages need image sides divisible by {2**levels}, "
            f"got {H}x{W}"
        )
    try:
        check_norm_groups(config.widths, config.res_blocks, config.attention)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    model = Autoencoder(
        config.widths,
        config.latent_channels,
        x_train.shape[-1],
        res_blocks=config.res_blocks,
        attention=config.attention,
    )
    data = jnp.asarray(x_train)
    optimizer = optax.adam(config.learning_rate)

    def init(key):
        k_params, k_run = jax.random.split(key)
        params = model.init(k_params, data[:1])["params"]
        return AETrainState(params, optimizer.init(params), k_run, jnp.zeros((), jnp.int32))

    def one_step(state):
        key, k_idx, k_mark = jax.random.split(state.key, 3)
        # Folded in, not a fourth split, so runs without latent noise draw what they drew.
        k_noise = jax.random.fold_in(k_mark, 1)
        x = data[jax.random.randint(k_idx, (config.batch_size,), 0, data.shape[0])]
        x = random_marks(k_mark, x, config.mark_probability, config.mark_low)
        (_, metrics), grads = jax.value_and_grad(
            lambda p: autoencoder_loss(
                model, p, x, config.latent_penalty, config.latent_noise, k_noise
            ),
            has_aux=True,
        )(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return AETrainState(params, opt_state, key, state.step + 1), metrics

    step_jit = jax.jit(one_step, donate_argnums=0)

    def train_chunk(state, n):
        # A Python loop over the jitted step (a conv net's gradient is slow inside a scan on
        # XLA:CPU; see diffusion.train).
        rows = []
        for _ in range(n):
            state, m = step_jit(state)
            rows.append(m)
        return state, {k: jnp.stack([r[k] for r in rows]) for k in rows[0]}

    return model, init, train_chunk


def _bind(model: Autoencoder, params):
    encode = jax.jit(lambda x: model.apply({"params": params}, x, method=Autoencoder.encode))
    decode = jax.jit(lambda z: model.apply({"params": params}, z, method=Autoencoder.decode))
    return encode, decode


def _in_batches(fn, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    return np.concatenate(
        [np.asarray(fn(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
    )


@dataclasses.dataclass
class AutoencoderRun(ChunkRun):
    def describe(self) -> str:
        r = self.results
        return (
            f"done in {r['train_seconds']:.0f} s: {r['iterations']} steps, test reconstruction "
            f"MSE {r['test_mse']:.5f} (PSNR {r['test_psnr']:.1f} dB), latent scale "
            f"{r['latent_scale']:.3f}"
        )


def run_autoencoder(
    config: AutoencoderConfig | None = None,
    run_dir: str | None = None,
    resume: str | None = None,
    progress: bool = True,
    max_chunks: int | None = None,
) -> AutoencoderRun:
    """Train the autoencoder (Rombach et al. 2022, Sec. 3; loss of `autoencoder_loss`) on the
    training split's images [N, H, W, C] in a run folder (config.json, metrics.csv,
    checkpoints, results.json with the test reconstruction error and the latent scale);
    resume and Ctrl-C as for every method."""
    default = default_run_dir("autoencoder", config or AutoencoderConfig(), label="")
    config, run_dir, (x_train, _, x_test, _) = prepare_run_dir(
        AutoencoderConfig, config, run_dir, resume, default, load_training_images
    )
    model, init, train_chunk = make_autoencoder_trainer(config, x_train)

    loop = drive_config_chunks(
        run_dir,
        config,
        init(jax.random.PRNGKey(config.seed)),
        train_chunk,
        chunk_logger("autoencoder", config.iterations, "reconstruction", progress),
        resume is not None,
        max_chunks,
        what="the reconstruction error",
    )
    results = {}
    if not loop.interrupted:
        encode, decode = _bind(model, loop.state.params)
        z_train = _in_batches(encode, x_train)
        recon = _in_batches(lambda x: decode(encode(x)), x_test)
        mse = float(np.mean((recon - x_test) ** 2))
        results = write_results(
            run_dir,
            loop,
            int(loop.state.step),
            test_mse=mse,
            test_psnr=float(10 * np.log10(4.0 / mse)),
            latent_scale=float(np.std(z_train)),
            image_shape=list(x_train.shape[1:]),
        )
    return AutoencoderRun(run_dir, results, loop.rows, loop.interrupted, loop.state)


def load_autoencoder(run_dir: str) -> LoadedAutoencoder:
    """The trained autoencoder of a finished `train autoencoder` run folder."""
    paths = [os.path.join(run_dir, name) for name in ("config.json", "results.json")]
    for path in paths:
        if not os.path.exists(path):
            raise CheckpointError(
                f"autoencoder: {run_dir!r} is not a finished autoencoder run (no {path})"
            )
    with open(paths[0]) as f:
        config = config_lib.from_json(AutoencoderConfig, f.read(), paths[0])
    try:
        with open(paths[1]) as f:
            results = json.load(f)
        float(results["latent_scale"])
    except (ValueError, KeyError, TypeError) as e:  # JSONDecodeError is a ValueError
        raise CheckpointError(
            f"autoencoder: {paths[1]} is damaged (no latent_scale in a JSON object: {e})"
        ) from None
    if "image_shape" in results:  # the data file is not needed, nor read, to load the model
        example = np.zeros((1, *results["image_shape"]), np.float32)
    else:  # a run folder written before results.json recorded the shape
        example = load_training_images(config)[0][:1]
    model, init, _ = make_autoencoder_trainer(config, example)
    template = init(jax.random.PRNGKey(config.seed))
    params = restore_run_state(run_dir, template)[0].params
    encode, decode = _bind(model, params)
    return LoadedAutoencoder(config, model, params, results["latent_scale"], encode, decode)


# ----------------------------------------------------------------------------------------------
# DDPM in the latent space.


def latent_ddpm_config(**overrides) -> DDPMConfig:
    """DDPMConfig sized for 7x7 latents (of any channel count; the measured runs use 2 and 4):
    one U-Net level of width 32 with attention at 7x7 (no downsampling: 7 is odd; for 14x14
    latents pass channel_mults=(1, 2)), 2 residual blocks, no dropout, 3000 steps, and no clipping
    of x0-hat (scaled latents have unit spread, not the image box [-1, 1]); Adam 2e-4 and
    the uniform L_simple, as in the measured runs (the image model's faster recipe is
    untried here)."""
    base = dict(
        clip_x0=0.0,
        base_channels=32,
        channel_mults=(1,),
        num_res_blocks=2,
        attention_resolutions=(7,),
        dropout=0.0,
        iterations=3000,
        warmup_steps=200,
        learning_rate=2e-4,  # the settings of the measured latent runs (benchmarks/RESULTS.md)
        min_snr_gamma=0.0,
        sample_count=0,
    )
    base.update(overrides)
    cfg = DDPMConfig(**base)
    config_lib.validate(cfg)
    return cfg


class LatentDiffusion(NamedTuple):
    """A trained latent DDPM: `sample(n, seed)` -> decoded images [n, H, W, C] in [-1, 1]."""

    autoencoder: LoadedAutoencoder
    trainer: object
    params: dict
    losses: np.ndarray

    def sample(
        self,
        n: int,
        seed: int = 0,
        sampler: str = "ddim",
        steps: int = 50,
        labels=None,
        guidance: float | None = None,
    ):
        """n latents [n, h, w, L] drawn by `sampler` ("ddim" with `steps` network calls, or
        "ddpm": Ho et al. 2020, Alg. 2), rescaled and decoded: images [n, H, W, C]. A
        class-conditional model takes labels [n] and the guidance weight w (Ho & Salimans
        2022, eq. 6; None: the config's); labels None samples its unconditional model."""
        z = sample_images(
            self.trainer,
            self.params,
            n,
            sampler,
            steps,
            seed=seed,
            labels=labels,
            guidance=guidance,
        )
        return _in_batches(self.autoencoder.decode, z * self.autoencoder.scale)


def train_latent_ddpm(
    autoencoder: LoadedAutoencoder,
    images: np.ndarray,
    config: DDPMConfig | None = None,
    progress: bool = False,
    labels: np.ndarray | None = None,
) -> LatentDiffusion:
    """DDPM (Ho et al. 2020, Algorithm 1) on the latents E(x) / scale of images [N, H, W, C]
    in [-1, 1] (Rombach et al. 2022, Sec. 3-4); `config` defaults to `latent_ddpm_config()`.
    With `config.num_classes` > 0 it is class-conditional on labels [N] (Ho & Salimans 2022)."""
    config = config or latent_ddpm_config()
    latents = _in_batches(autoencoder.encode, np.asarray(images, np.float32)) / autoencoder.scale
    trainer = make_ddpm_trainer(config, latents, labels)
    state = trainer.init(jax.random.PRNGKey(config.seed))
    losses = []
    for n in chunk_sizes(config.iterations, config.eval_every):
        state, m = trainer.train_chunk(state, n)
        losses.append(np.asarray(m["loss"]))
        if progress:
            print(f"latent ddpm: step {int(state.step)} loss {losses[-1].mean():.4f}", flush=True)
    return LatentDiffusion(autoencoder, trainer, state.ema_params, np.concatenate(losses))


# ----------------------------------------------------------------------------------------------
# `rlax-zoo disguise`.


def read_image(path: str) -> np.ndarray:
    """One image [H, W, 1] in [-1, 1] from a PNG (grey or colour, averaged to grey) or a .npy
    array [H, W] / [H, W, 1] of 0..255 (uint8) or 0..1 (float)."""
    if not os.path.exists(path):
        raise ImageDataError(f"image: {path!r} does not exist")
    try:
        if path.endswith(".npy"):
            x = np.load(path)
            max_value = 255.0 if x.dtype == np.uint8 else 1.0
        else:
            import matplotlib.image

            x = matplotlib.image.imread(path)  # PNG: float in [0, 1]
            max_value = 1.0
    except (ValueError, OSError, SyntaxError) as e:
        raise ImageDataError(f"image: {path!r} cannot be read as a PNG or .npy ({e})") from None
    x = np.asarray(x, np.float32)
    if x.ndim == 3 and x.shape[-1] in (3, 4):
        x = x[..., :3].mean(-1)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 2:
        raise ImageDataError(f"image: {path!r} must be one grey or RGB image, got {x.shape}")
    return to_model_range(x[None], max_value)[0]


def save_image(x: np.ndarray, path: str) -> None:
    """Writes one [H, W, 1] image in [-1, 1] as a grey PNG."""
    import matplotlib.image

    from diffusion.data import to_uint8

    matplotlib.image.imsave(path, to_uint8(x)[..., 0], cmap="gray", vmin=0, vmax=255)


def run_disguise(
    autoencoder_dir: str,
    copyrighted: str,
    bases: list[str],
    out_dir: str,
    alpha: float = 0.0,
    gamma_1: float = 4 / 10**2.5,
    gamma_2: float | None = None,
    learning_rate: float = 0.01,
    max_steps: int = 1000,
    linf_radius: float | None = 0.112,
    optimizer: str = "adam",
) -> dict:
    """Disguises of `copyrighted` made from each base image (Algorithm 1 of Lu et al. 2024)
    against a trained autoencoder's encoder; writes disguise-K.png, revealed-K.png
    (D(E(x_d)), the detection's second step) and report.json into out_dir.

    The defaults ask for PSNR >= 25 dB against the base (gamma_1 = 4 / 10^2.5, also
    guaranteed by the L-infinity radius 0.112) and, when gamma_2 is None, a latent distance
    below a quarter of the median distance between two clean test images of the same class.
    """
    from diffusion.disguise import detection_scores, generate_disguises

    ae = load_autoencoder(autoencoder_dir)
    make_output_dir(out_dir, "out")  # before the optimisation
    x_c = read_image(copyrighted)
    x_b = np.stack([read_image(p) for p in bases])
    _, _, x_test, y_test = load_training_images(ae.config)
    expected = tuple(x_test.shape[1:])
    for name, shape in (("copyrighted", x_c.shape), ("base", x_b.shape[1:])):
        if shape != expected:
            raise ImageDataError(
                f"{name}: images must be {expected} for this autoencoder, got {shape}"
            )
    if gamma_2 is None:
        gamma_2 = same_class_latent_distance(ae.encode, x_test, y_test) / 4
    result = generate_disguises(
        ae.encode,
        x_b,
        x_c,
        alpha=alpha,
        gamma_1=gamma_1,
        gamma_2=gamma_2,
        learning_rate=learning_rate,
        max_steps=max_steps,
        optimizer=optimizer,
        linf_radius=linf_radius,
    )
    revealed = np.asarray(ae.decode(ae.encode(result.x_d)))
    for k in range(len(bases)):
        save_image(result.x_d[k], os.path.join(out_dir, f"disguise-{k}.png"))
        save_image(revealed[k], os.path.join(out_dir, f"revealed-{k}.png"))
    report = dict(
        bases=list(bases),
        copyrighted=copyrighted,
        gamma_1=gamma_1,
        gamma_2=gamma_2,
        d1=result.d1.tolist(),
        d2=result.d2.tolist(),
        psnr=result.psnr.tolist(),
        reached=result.reached.tolist(),
        steps=result.steps.tolist(),
        base_d2=detection_scores(ae.encode, x_b, x_c).tolist(),
    )
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    return report


def same_class_latent_distance(encode, x: np.ndarray, y: np.ndarray) -> float:
    """Median of D2(E(x_i), E(x_j)) over pairs i < j of images [N, H, W, C] with the same
    label in y [N]."""
    z = _in_batches(encode, x).reshape(len(x), -1)
    distances = []
    for c in np.unique(y):
        zc = z[y == c]
        d = np.mean((zc[:, None] - zc[None]) ** 2, -1)
        distances.append(d[np.triu_indices(len(zc), 1)])
    return float(np.median(np.concatenate(distances)))
