"""Training the Transformer on a parallel corpus (Multi30k En-De by default):
`rlax-zoo train transformer`.

Vaswani et al. 2017, Sec. 5: batches of sentence pairs grouped by length, Adam with
beta_2 = 0.98 and eps = 1e-9, the learning rate of eq. (3), dropout and label smoothing
0.1; sized down for a CPU (3 + 3 layers of width 256 by default, against the base model's
6 + 6 of 512). The run folder holds config.json, metrics.csv (one row per chunk of
`eval_every` steps: the training loss, and the validation split's per-token cross-entropy
and accuracy under teacher forcing), results.json (BLEU, Papineni et al. 2002, on
lower-cased word tokens, of beam search (Sec. 6.1: beam 4, length penalty 0.6) and of
greedy decoding, on the validation and test splits; the training time), translations.txt
(the first test sentences: source, reference, beam output) and checkpoints/.
`resume=RUN_DIR` continues from the newest checkpoint and ends where an uninterrupted run
would; Ctrl-C finishes the chunk in flight, checkpoints and exits.

Batching: each epoch shuffles the pairs (a NumPy generator seeded by (seed, epoch)), sorts
pools of 64 batches by length, cuts them into batches of `batch_size` pairs, and pads each
batch only to its own longest sentence rounded up to a multiple of 8 (so a few shapes are
compiled). Batch k of a run is a function of the seed and k alone, which makes runs
reproducible and resumable.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rlax_zoo.checkpointing import restore_run_state
from rlax_zoo.config import ConfigError, option, time_budget_option
from rlax_zoo.runner import (
    ChunkRun,
    default_run_dir,
    drive_config_chunks,
    finished_run_config,
    prepare_run_dir,
    write_results,
)
from sequence.data import (
    BOS,
    DEFAULT_DIR,
    EOS,
    TextDataError,
    corpus_bleu,
    encode_batch,
    load_translation,
    tokenize,
)
from sequence.transformer import (
    Transformer,
    greedy_decode,
    inverse_sqrt_schedule,
    label_smoothed_loss,
    make_retiring_beam_search,
)

POOL_BATCHES = 64  # batches sorted by length together
LENGTH_QUANTUM = 8  # batches are padded to a multiple of this


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    data_dir: str = option(
        DEFAULT_DIR,
        "Folder with {train,val,test_2016_flickr}.{src,tgt}.gz line-aligned text.",
    )
    src: str = option("en", "Source language suffix.")
    tgt: str = option("de", "Target language suffix.")
    min_freq: int = option(2, "Words seen fewer times in training become <unk>.", low=1)
    max_len: int = option(
        64, "Longest sentence in tokens (with BOS/EOS); longer training pairs are dropped.", low=4
    )
    max_train_pairs: int = option(
        0, "Train on the first N pairs of the training split only (0: all of them).", low=0
    )
    seed: int = option(0, "Random seed.", low=0)
    dim: int = option(256, "d_model.", low=2)
    num_heads: int = option(4, "Attention heads h (must divide dim).", low=1)
    hidden: int = option(1024, "Feed-forward inner size d_ff.", low=1)
    num_layers: int = option(3, "Encoder layers and decoder layers N.", low=1)
    dropout: float = option(
        0.1, "P_drop on every sub-layer output and embedding.", low=0.0, high=1.0, high_open=True
    )
    label_smoothing: float = option(0.1, "epsilon_ls.", low=0.0, high=1.0, high_open=True)
    batch_size: int = option(128, "Sentence pairs per batch.", low=1)
    iterations: int = option(3000, "Adam steps.", low=1)
    time_budget_s: float = time_budget_option()
    warmup_steps: int = option(800, "warmup_steps of eq. (3).", low=1)
    lr_scale: float = option(1.0, "Factor on eq. (3)'s learning rate.", low=0.0, low_open=True)
    max_grad_norm: float = option(
        0.0, "Global gradient-norm clip (0: none, as in the paper).", low=0.0
    )
    eval_every: int = option(250, "Steps per chunk: a metrics row and the validation loss.", low=1)
    checkpoint_every: int = option(1, "Chunks between checkpoints.", low=1)
    eval_batch_size: int = option(256, "Sentences per batch when evaluating and decoding.", low=1)
    beam_size: int = option(
        4, "Beam size of the final evaluation (Sec. 6.1: 4; 1: greedy decoding).", low=1
    )
    length_penalty: float = option(
        0.6, "alpha of the beam's length penalty ((5 + |Y|) / 6)^alpha (Sec. 6.1: 0.6).", low=0.0
    )
    translations_shown: int = option(20, "Test translations written to translations.txt.", low=0)


class TrainState(NamedTuple):
    params: dict
    opt_state: optax.OptState
    key: jax.Array
    step: jax.Array  # int32 []: Adam steps taken


def batch_plan(num_pairs: int, lengths: np.ndarray, batch_size: int, seed: int, epoch: int):
    """The epoch's batches: a list of index arrays [batch_size] (see the module doc)."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(num_pairs)
    pool = batch_size * POOL_BATCHES
    batches = []
    for start in range(0, num_pairs - batch_size + 1, pool):
        idx = order[start : start + pool]
        idx = idx[np.argsort(lengths[idx], kind="stable")]
        batches += [
            idx[i : i + batch_size] for i in range(0, len(idx) - batch_size + 1, batch_size)
        ]
    return [batches[i] for i in rng.permutation(len(batches))]


def _trim(ids_NT: np.ndarray) -> np.ndarray:
    """ids cut to the longest row's length rounded up to LENGTH_QUANTUM (padding is id 0)."""
    longest = int((ids_NT != 0).sum(1).max())
    keep = min(ids_NT.shape[1], -(-longest // LENGTH_QUANTUM) * LENGTH_QUANTUM)
    return ids_NT[:, :keep]


def length_order(src_NS: np.ndarray) -> np.ndarray:
    """Indices [N] that sort the sentences src_NS [N, S] by their number of tokens (padding
    is id 0), stably."""
    return np.argsort((src_NS != 0).sum(1), kind="stable")


def padded_batches(src_NS: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """src_NS [N, S] cut into batches [batch_size, S] in order, the last one padded with rows
    holding only EOS (a harmless non-empty source); the outputs of the first N rows are
    src's."""
    rows = -(-len(src_NS) // batch_size) * batch_size
    padded = np.zeros((rows, src_NS.shape[1]), src_NS.dtype)
    padded[: len(src_NS)] = src_NS
    padded[len(src_NS) :, 0] = EOS
    return [padded[i : i + batch_size] for i in range(0, rows, batch_size)]


def decode_in_batches(decode, src_NS: np.ndarray, batch_size: int, by_length: bool = True):
    """decode(src [batch_size, S]) -> [batch_size, T] applied to src_NS [N, S] in
    `padded_batches`; with `by_length` the batches are cut from the sentences sorted by
    source length (`length_order`). Returns [N, T] in src_NS's order."""
    order = length_order(src_NS) if by_length else np.arange(len(src_NS))
    out = np.concatenate(
        [np.asarray(decode(x)) for x in padded_batches(src_NS[order], batch_size)]
    )[: len(src_NS)]
    result = np.empty_like(out)
    result[order] = out
    return result


class TranslationTrainer(NamedTuple):
    model: Transformer
    data: object  # sequence.data.TranslationData
    init: callable  # key -> TrainState
    train_chunk: callable  # (state, n) -> (state, {"loss", "nll", "accuracy": [n]})
    evaluate: callable  # (params, src, tgt) -> {"nll", "accuracy"} over the split
    translate: callable  # (params, src [N, S], beam_size, by_length) -> [N, max_len] token ids


def check_config(config: TransformerConfig, data=None) -> None:
    """ConfigError for a config that cannot build its model or, given `data`, cannot train
    on it (the fields' own ranges are checked by `rlax_zoo.config.validate`)."""
    if config.dim % config.num_heads:
        raise ConfigError(f"num_heads: must divide dim ({config.dim}), got {config.num_heads}")
    if config.dim % 2:
        raise ConfigError(f"dim: must be even (sinusoidal positions), got {config.dim}")
    if data is not None and len(data.train_src) < config.batch_size:
        raise ConfigError(
            f"batch_size: the training split has {len(data.train_src)} pairs that fit "
            f"max_len, fewer than batch_size ({config.batch_size})"
        )


def make_translation_trainer(config: TransformerConfig, data) -> TranslationTrainer:
    """init / train_chunk / evaluate / translate for `config` on `data` (load_translation)."""
    check_config(config, data)
    model = Transformer(
        len(data.src_vocab),
        len(data.tgt_vocab),
        dim=config.dim,
        num_heads=config.num_heads,
        hidden=config.hidden,
        num_layers=config.num_layers,
        dropout=config.dropout,
        max_len=config.max_len,
    )
    lr = inverse_sqrt_schedule(config.dim, config.warmup_steps, config.lr_scale)
    adam = optax.adam(lr, b1=0.9, b2=0.98, eps=1e-9)
    clip = config.max_grad_norm
    optimizer = optax.chain(optax.clip_by_global_norm(clip), adam) if clip else adam
    src_np, tgt_np = data.train_src, data.train_tgt
    lengths = np.maximum((src_np != 0).sum(1), (tgt_np != 0).sum(1))
    per_epoch = len(src_np) // config.batch_size
    plans = {}

    def batch(k: int):
        epoch = k // per_epoch
        if epoch not in plans:
            plans.clear()
            plans[epoch] = batch_plan(len(src_np), lengths, config.batch_size, config.seed, epoch)
        idx = plans[epoch][k % per_epoch]
        return _trim(src_np[idx]), _trim(tgt_np[idx])

    def init(key):
        k_params, k_run = jax.random.split(key)
        src, tgt = batch(0)
        params = model.init(k_params, jnp.asarray(src), jnp.asarray(tgt[:, :-1]))["params"]
        return TrainState(params, optimizer.init(params), k_run, jnp.zeros((), jnp.int32))

    @functools.partial(jax.jit, donate_argnums=0)
    def step(state: TrainState, src, tgt):
        key, k_drop = jax.random.split(state.key)

        def loss_fn(params):
            logits = model.apply(
                {"params": params}, src, tgt[:, :-1], False, rngs={"dropout": k_drop}
            )
            out = label_smoothed_loss(logits, tgt[:, 1:], config.label_smoothing)
            return out.loss, out

        grads, out = jax.grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": out.loss, "nll": out.nll, "accuracy": out.accuracy}
        return TrainState(params, opt_state, key, state.step + 1), metrics

    def train_chunk(state, n):
        rows = []
        first = int(state.step)
        for k in range(first, first + n):
            src, tgt = batch(k)
            state, m = step(state, src, tgt)
            rows.append(m)
        return state, {k: jnp.stack([r[k] for r in rows]) for k in rows[0]}

    @jax.jit
    def eval_batch(params, src, tgt):
        logits = model.apply({"params": params}, src, tgt[:, :-1])
        out = label_smoothed_loss(logits, tgt[:, 1:], 0.0)
        return out.nll * out.tokens, out.accuracy * out.tokens, out.tokens

    def evaluate(params, src, tgt):
        """Teacher-forced per-token cross-entropy and accuracy over a whole split."""
        total = np.zeros(3)
        for i in range(0, len(src), config.eval_batch_size):
            s, t = (
                _trim(src[i : i + config.eval_batch_size]),
                _trim(tgt[i : i + config.eval_batch_size]),
            )
            total += np.array([float(v) for v in eval_batch(params, s, t)])
        return {"nll": total[0] / total[2], "accuracy": total[1] / total[2]}

    greedy = jax.jit(
        lambda params, src: greedy_decode(model, params, src, config.max_len, BOS, EOS)
    )
    beam_searches = {}  # beam size -> make_retiring_beam_search's search

    def decode(params, src, beam_size):
        ours = {"params": params}
        if beam_size == 1:
            return greedy(ours, src)
        if beam_size not in beam_searches:
            beam_searches[beam_size] = make_retiring_beam_search(
                model, config.max_len, BOS, EOS, beam_size, config.length_penalty
            )
        return beam_searches[beam_size](ours, src)[0]

    def translate(params, src, beam_size: int = 1, by_length: bool = True):
        """Translations [N, max_len] of source ids [N, S] by beam search (beam size 1:
        greedy decoding), decoded in padded batches of eval_batch_size; with `by_length`,
        the batches are cut from the sentences sorted by source length (the output keeps
        src's order), so that a batch's sentences tend to settle together and the retiring
        search sheds them sooner."""
        return decode_in_batches(
            lambda x: decode(params, x, beam_size), src, config.eval_batch_size, by_length
        )

    return TranslationTrainer(model, data, init, train_chunk, evaluate, translate)


def bleu_of(
    trainer: TranslationTrainer, params, src, refs, beam_size: int = 1
) -> tuple[float, list[list[str]]]:
    """Corpus BLEU (Papineni et al. 2002) of the translations of src against refs, and the
    translations' tokens."""
    ids = trainer.translate(params, src, beam_size)
    hyps = [trainer.data.tgt_vocab.decode(row) for row in ids]
    return corpus_bleu(hyps, refs), hyps


def _load_checked(config: TransformerConfig):
    """The config's corpus, loaded and checked against the config before a run folder is made."""
    check_config(config)  # before reading the corpus
    try:
        data = load_translation(
            config.data_dir,
            config.src,
            config.tgt,
            config.min_freq,
            config.max_len,
            max_train=config.max_train_pairs or None,
        )
    except TextDataError as e:
        raise ConfigError(str(e)) from None
    check_config(config, data)
    return data


@dataclasses.dataclass
class TranslationRun(ChunkRun):
    def describe(self) -> str:
        r = self.results
        return (
            f"done in {r['train_seconds']:.0f} s: {r['iterations']} steps; BLEU with beam "
            f"{r['beam_size']}: {r['val_bleu']:.2f} (val), {r['test_bleu']:.2f} (test); greedy: "
            f"{r['val_bleu_greedy']:.2f} (val), {r['test_bleu_greedy']:.2f} (test)"
        )


def _final_results(config, data, trainer, params, run_dir=None) -> dict:
    """BLEU of beam search (config.beam_size) and of greedy decoding on the validation and
    test splits, with the test decoding's seconds; with run_dir, translations.txt there."""
    out = dict(beam_size=config.beam_size, length_penalty=config.length_penalty)
    for label, beam in (("", config.beam_size), ("_greedy", 1)):
        out[f"val_bleu{label}"], _ = bleu_of(trainer, params, data.val_src, data.val_refs, beam)
        t0 = time.perf_counter()
        out[f"test_bleu{label}"], hyps = bleu_of(
            trainer, params, data.test_src, data.test_refs, beam
        )
        out[f"test_decode_seconds{label}"] = time.perf_counter() - t0
        if label == "" and run_dir is not None:
            with open(os.path.join(run_dir, "translations.txt"), "w") as f:
                for i in range(min(config.translations_shown, len(hyps))):
                    src = " ".join(data.src_vocab.decode(data.test_src[i]))
                    ref, hyp = " ".join(data.test_refs[i]), " ".join(hyps[i])
                    f.write(f"src: {src}\nref: {ref}\nout: {hyp}\n\n")
    out.update(
        src_vocab=len(data.src_vocab),
        tgt_vocab=len(data.tgt_vocab),
        dropped_train_pairs=data.dropped_train,
    )
    return out


# The fields that change only how a trained model is evaluated, never its training:
# `evaluate_transformer` may change them on a finished run.
EVALUATION_FIELDS = ("beam_size", "length_penalty", "eval_batch_size")


def restore_finished(run_dir: str, caller: str, **changes):
    """(config with `changes`, data, trainer, state) of a finished run, for evaluation;
    `changes` may touch only EVALUATION_FIELDS (`caller` names who asked, in errors)."""
    config = finished_run_config(
        TransformerConfig, run_dir, changes, EVALUATION_FIELDS, caller, "run_transformer"
    )
    data = _load_checked(config)
    trainer = make_translation_trainer(config, data)
    state, _ = restore_run_state(run_dir, trainer.init(jax.random.PRNGKey(config.seed)))
    return config, data, trainer, state


def evaluate_transformer(run_dir: str, **changes) -> TranslationRun:
    """A finished run's model evaluated again (BLEU of beam search and greedy decoding, as
    `run_transformer` reports it) with evaluation-only fields changed (EVALUATION_FIELDS,
    e.g. beam_size=8); the results of a fresh run of the changed config, without training.
    Nothing in run_dir is written. Returns a TranslationRun whose metrics are empty."""
    config, data, trainer, state = restore_finished(run_dir, "evaluate_transformer", **changes)
    with open(os.path.join(run_dir, "results.json")) as f:
        results = json.load(f)
    results.update(_final_results(config, data, trainer, state.params))
    return TranslationRun(run_dir, results, [], False, state)


def translate_sentences(run_dir: str, sentences: list[str], beam_size: int | None = None):
    """Translations (strings of lower-cased word tokens) of raw source sentences by a finished
    run's model, with beam search of `beam_size` (default: the run's; 1: greedy decoding)."""
    if not sentences:
        raise ConfigError("sentences: give at least one sentence to translate")
    batch = min(len(sentences), 64)  # no decoding of padding rows for a few sentences
    config, data, trainer, state = restore_finished(
        run_dir, "translate_sentences", beam_size=beam_size, eval_batch_size=batch
    )
    tokens = [tokenize(s) for s in sentences]
    src, fits = encode_batch(tokens, data.src_vocab, config.max_len, add_bos=False)
    if not fits.all():
        i = int(np.argmin(fits))
        raise ConfigError(
            f"sentences: sentence {i} has {len(tokens[i])} tokens; the run's max_len "
            f"({config.max_len}) holds at most {config.max_len - 1}"
        )
    ids = trainer.translate(state.params, src, config.beam_size)
    return [" ".join(data.tgt_vocab.decode(row)) for row in ids]


def run_transformer(
    config: TransformerConfig | None = None,
    run_dir: str | None = None,
    resume: str | None = None,
    progress: bool = True,
    max_chunks: int | None = None,
) -> TranslationRun:
    """Train the Transformer (Vaswani et al. 2017) in a run folder and report the BLEU of
    beam search and of greedy decoding on the validation and test splits; see the module doc
    for the folder."""
    cfg = config or TransformerConfig()
    default = default_run_dir("transformer", cfg, label=f"{cfg.src}-{cfg.tgt}")
    config, run_dir, data = prepare_run_dir(
        TransformerConfig, config, run_dir, resume, default, _load_checked
    )
    trainer = make_translation_trainer(config, data)

    def after_chunk(state, chunk, m, dt, total_seconds):
        val = trainer.evaluate(state.params, data.val_src, data.val_tgt)
        row = dict(chunk=chunk, iteration=int(state.step))
        row.update({k: float(np.mean(v)) for k, v in m.items()})
        row.update(val_nll=val["nll"], val_accuracy=val["accuracy"])
        row.update(iterations_per_sec=len(m["loss"]) / dt, train_seconds=total_seconds)
        if progress:
            print(
                f"transformer: step {row['iteration']}/{config.iterations} loss "
                f"{row['loss']:.4f} val nll {val['nll']:.4f} val accuracy "
                f"{val['accuracy']:.4f} ({row['iterations_per_sec']:.2f} steps/s)",
                flush=True,
            )
        return [row]

    loop = drive_config_chunks(
        run_dir,
        config,
        trainer.init(jax.random.PRNGKey(config.seed)),
        trainer.train_chunk,
        after_chunk,
        resume is not None,
        max_chunks,
    )
    results = {}
    if not loop.interrupted:
        final = _final_results(config, data, trainer, loop.state.params, run_dir)
        results = write_results(run_dir, loop, int(loop.state.step), **final)
    return TranslationRun(run_dir, results, loop.rows, loop.interrupted, loop.state)
