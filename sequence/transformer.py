"""The Transformer encoder-decoder (Vaswani et al. 2017, Sec. 3), its training loss and
learning rate (Sec. 5.3-5.4) and greedy decoding with a key/value cache.

Post-layer-norm as in the paper: each sub-layer is LayerNorm(x + Dropout(Sublayer(x)))
(Sec. 3.1, 5.4). Embeddings are scaled by sqrt(d_model) and summed with the sinusoidal
positions (Sec. 3.4-3.5); the pre-softmax projection shares the target embedding's weights
(Sec. 3.4). Token ids: 0 is padding, `bos_id` starts every decoder input.

Shapes: B batch, S source length, T target length, D model size, V vocabulary size.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sequence.attention import (
    MultiHeadAttention,
    causal_mask,
    padding_mask,
    sinusoidal_positions,
)

PAD_ID = 0


class FeedForward(nn.Module):
    """FFN(x) = max(0, x W_1 + b_1) W_2 + b_2, Vaswani et al. 2017, eq. (2).
    x: [..., D] -> [..., D]."""

    dim: int
    hidden: int

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.dim)(nn.relu(nn.Dense(self.hidden)(x)))


class EncoderLayer(nn.Module):
    """Self-attention then the feed-forward network, each LayerNorm(x + Dropout(f(x)))
    (Sec. 3.1). x: [B, S, D], mask: [B, 1, 1, S] -> [B, S, D]."""

    dim: int
    num_heads: int
    hidden: int
    dropout: float

    @nn.compact
    def __call__(self, x, mask, deterministic: bool):
        drop = nn.Dropout(self.dropout, deterministic=deterministic)
        x = nn.LayerNorm()(x + drop(MultiHeadAttention(self.num_heads, self.dim)(x, x, mask)))
        return nn.LayerNorm()(x + drop(FeedForward(self.dim, self.hidden)(x)))


class DecoderLayer(nn.Module):
    """Masked self-attention, attention over the encoder's output, then the feed-forward
    network, each LayerNorm(x + Dropout(f(x))) (Sec. 3.1).

    `__call__(y_BTD, memory_kv, self_mask, cross_mask)` decodes all T positions at once
    (training); `step(y_B1D, memory_kv, cross_mask, cache, i)` decodes position i with the
    earlier positions' keys and values in `cache` = (k, v), each [B, T_max, H, D/H].
    memory_kv = `cross_kv(memory_BSD)`: the encoder output's keys and values, computed once.
    """

    dim: int
    num_heads: int
    hidden: int
    dropout: float

    def setup(self):
        self.self_attention = MultiHeadAttention(self.num_heads, self.dim)
        self.cross_attention = MultiHeadAttention(self.num_heads, self.dim)
        self.feed_forward = FeedForward(self.dim, self.hidden)
        self.norms = [nn.LayerNorm() for _ in range(3)]
        self.drop = nn.Dropout(self.dropout)

    def cross_kv(self, memory_BSD):
        return self.cross_attention.key_value(memory_BSD)

    def _rest(self, y, attended, memory_kv, cross_mask, deterministic):
        y = self.norms[0](y + self.drop(attended, deterministic=deterministic))
        cross = self.cross_attention.attend(y, *memory_kv, cross_mask)
        y = self.norms[1](y + self.drop(cross, deterministic=deterministic))
        ffn = self.feed_forward(y)
        return self.norms[2](y + self.drop(ffn, deterministic=deterministic))

    def __call__(self, y, memory_kv, self_mask, cross_mask, deterministic: bool):
        attended = self.self_attention(y, y, self_mask)
        return self._rest(y, attended, memory_kv, cross_mask, deterministic)

    def step(self, y_B1D, memory_kv, cross_mask, cache, i):
        k_new, v_new = self.self_attention.key_value(y_B1D)
        k = jax.lax.dynamic_update_slice_in_dim(cache[0], k_new.astype(cache[0].dtype), i, 1)
        v = jax.lax.dynamic_update_slice_in_dim(cache[1], v_new.astype(cache[1].dtype), i, 1)
        seen = (jnp.arange(k.shape[1]) <= i)[None, None, None, :]
        attended = self.self_attention.attend(y_B1D, k, v, seen)
        return self._rest(y_B1D, attended, memory_kv, cross_mask, True), (k, v)


class Transformer(nn.Module):
    """The encoder-decoder of Vaswani et al. 2017, Fig. 1, with N encoder and N decoder layers.

    `__call__(src_BS, tgt_in_BT, deterministic) -> logits [B, T, V_tgt]`: teacher forcing,
    where tgt_in is the target shifted right (BOS first). Padding (id 0) in src is masked out
    of every attention over the source. Methods `encode`, `decode`, `init_cache`,
    `decode_step` serve `greedy_decode`.
    """

    src_vocab: int
    tgt_vocab: int
    dim: int = 256
    num_heads: int = 4
    hidden: int = 1024
    num_layers: int = 3
    dropout: float = 0.1
    max_len: int = 128

    def setup(self):
        init = nn.initializers.normal(stddev=self.dim**-0.5)
        self.src_embed = nn.Embed(self.src_vocab, self.dim, embedding_init=init)
        self.tgt_embed = nn.Embed(self.tgt_vocab, self.dim, embedding_init=init)
        layer = dict(dim=self.dim, num_heads=self.num_heads, hidden=self.hidden)
        self.encoder = [EncoderLayer(**layer, dropout=self.dropout) for _ in range(self.num_layers)]
        self.decoder = [DecoderLayer(**layer, dropout=self.dropout) for _ in range(self.num_layers)]
        self.drop = nn.Dropout(self.dropout)
        self.positions = sinusoidal_positions(self.max_len, self.dim)

    def _embed(self, embed, ids, start, deterministic):
        length = ids.shape[1]
        if isinstance(start, int):
            pe = self.positions[start : start + length]
        else:  # a traced position (decode_step inside a scan)
            pe = jax.lax.dynamic_slice_in_dim(jnp.asarray(self.positions), start, length)
        x = embed(ids) * math.sqrt(self.dim) + pe
        return self.drop(x, deterministic=deterministic)

    def encode(self, src_BS, deterministic: bool = True):
        """The encoder stack: src ids [B, S] -> memory [B, S, D]."""
        mask = padding_mask(src_BS != PAD_ID)
        x = self._embed(self.src_embed, src_BS, 0, deterministic)
        for layer in self.encoder:
            x = layer(x, mask, deterministic)
        return x

    def decode(self, memory_BSD, src_BS, tgt_in_BT, deterministic: bool = True):
        """The decoder stack over all positions: -> logits [B, T, V_tgt]."""
        cross_mask = padding_mask(src_BS != PAD_ID)
        self_mask = causal_mask(tgt_in_BT.shape[1])
        y = self._embed(self.tgt_embed, tgt_in_BT, 0, deterministic)
        for layer in self.decoder:
            y = layer(y, layer.cross_kv(memory_BSD), self_mask, cross_mask, deterministic)
        return self.tgt_embed.attend(y)

    def __call__(self, src_BS, tgt_in_BT, deterministic: bool = True):
        for name, ids in (("src_BS", src_BS), ("tgt_in_BT", tgt_in_BT)):
            if ids.ndim != 2 or ids.shape[1] > self.max_len:
                raise ValueError(
                    f"{name}: expected [B, length] with length <= max_len ({self.max_len}), "
                    f"got shape {ids.shape}"
                )
        memory = self.encode(src_BS, deterministic)
        return self.decode(memory, src_BS, tgt_in_BT, deterministic)

    def cross_kvs(self, memory_BSD):
        """Every decoder layer's keys and values of the encoder output (computed once)."""
        return [layer.cross_kv(memory_BSD) for layer in self.decoder]

    def init_cache(self, batch: int, length: int):
        """Zero self-attention caches: per layer (k, v), each [B, length, H, D/H]."""
        shape = (batch, length, self.num_heads, self.dim // self.num_heads)
        return [(jnp.zeros(shape), jnp.zeros(shape)) for _ in range(self.num_layers)]

    def decode_step(self, memory_kvs, src_BS, token_B, cache, i):
        """Decode position i given the token at i: -> (logits [B, V_tgt], the updated cache)."""
        cross_mask = padding_mask(src_BS != PAD_ID)
        y = self._embed(self.tgt_embed, token_B[:, None], i, True)
        new_cache = []
        for layer, kv, c in zip(self.decoder, memory_kvs, cache, strict=True):
            y, c = layer.step(y, kv, cross_mask, c, i)
            new_cache.append(c)
        return self.tgt_embed.attend(y)[:, 0], new_cache


def _start_decoding(model: Transformer, params, src_BS: jax.Array, max_len: int):
    """(every decoder layer's keys and values of the encoded source, zero self-attention
    caches for max_len positions): what a cached decoder starts from."""
    if max_len < 2 or max_len > model.max_len:
        raise ValueError(f"max_len: must be in [2, model.max_len={model.max_len}], got {max_len}")
    memory = model.apply(params, src_BS, method=Transformer.encode)
    memory_kvs = model.apply(params, memory, method=Transformer.cross_kvs)
    cache = model.apply(params, src_BS.shape[0], max_len, method=Transformer.init_cache)
    return memory_kvs, cache


def greedy_decode(
    model: Transformer, params, src_BS: jax.Array, max_len: int, bos_id: int, eos_id: int
) -> jax.Array:
    """Greedy decoding (argmax at each position, Vaswani et al. 2017, Sec. 6.1 uses beam
    search; greedy is its beam size 1) with a key/value cache: one decoder step per token.

    src: [B, S] ids. Returns [B, max_len] int32: BOS, the chosen tokens, EOS, then padding
    (every position after a sequence's EOS is PAD_ID).
    """
    batch = src_BS.shape[0]
    memory_kvs, cache = _start_decoding(model, params, src_BS, max_len)

    def step(carry, i):
        token, cache, done = carry
        logits, cache = model.apply(
            params, memory_kvs, src_BS, token, cache, i, method=Transformer.decode_step
        )
        nxt = jnp.where(done, PAD_ID, jnp.argmax(logits, -1).astype(jnp.int32))
        return (nxt, cache, done | (nxt == eos_id)), nxt

    bos = jnp.full((batch,), bos_id, jnp.int32)
    _, tokens = jax.lax.scan(step, (bos, cache, jnp.zeros((batch,), bool)), jnp.arange(max_len - 1))
    return jnp.concatenate([bos[:, None], tokens.T], axis=1)


class TokenLoss(NamedTuple):
    loss: jax.Array  # label-smoothed cross-entropy per real token (what is minimised)
    nll: jax.Array  # plain cross-entropy per real token
    accuracy: jax.Array  # fraction of real tokens whose argmax is the target
    tokens: jax.Array  # number of real (non-padding) target tokens


def label_smoothed_loss(
    logits_BTV: jax.Array, targets_BT: jax.Array, smoothing: float = 0.1
) -> TokenLoss:
    """Cross-entropy against the label-smoothed target (1 - eps) one_hot + eps / V
    (Vaswani et al. 2017, Sec. 5.4, after Szegedy et al. 2016), averaged over the targets
    that are not padding (id 0). logits: [B, T, V], targets: [B, T] ints."""
    if logits_BTV.shape[:2] != targets_BT.shape:
        raise ValueError(
            f"targets_BT {targets_BT.shape} must match logits_BTV's [B, T] {logits_BTV.shape[:2]}"
        )
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing: must be in [0, 1), got {smoothing}")
    logp = jax.nn.log_softmax(logits_BTV.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, targets_BT[..., None], axis=-1)[..., 0]
    smoothed = (1.0 - smoothing) * nll - smoothing * logp.mean(-1)
    real = (targets_BT != PAD_ID).astype(jnp.float32)
    n = jnp.maximum(real.sum(), 1.0)
    correct = (jnp.argmax(logp, -1) == targets_BT).astype(jnp.float32)
    return TokenLoss(
        (smoothed * real).sum() / n, (nll * real).sum() / n, (correct * real).sum() / n, real.sum()
    )


def inverse_sqrt_schedule(dim: int, warmup_steps: int, scale: float = 1.0):
    """lrate = scale * d_model^-0.5 * min(step^-0.5, step * warmup_steps^-1.5), Vaswani et al.
    2017, eq. (3), with step counted from 1 (optax passes the count from 0)."""
    if warmup_steps < 1:
        raise ValueError(f"warmup_steps: must be >= 1, got {warmup_steps}")

    def schedule(count):
        step = jnp.asarray(count, jnp.float32) + 1.0
        return scale * dim**-0.5 * jnp.minimum(step**-0.5, step * warmup_steps**-1.5)

    return schedule


def length_penalty(length: jax.Array, alpha: float) -> jax.Array:
    """lp(Y) = ((5 + |Y|) / 6)^alpha, Wu et al. 2016, eq. (14), the penalty of Vaswani et al.
    2017, Sec. 6.1 (alpha = 0.6); a hypothesis scores log P(Y | X) / lp(Y)."""
    return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


class BeamState(NamedTuple):
    """Beam search's state for B examples with beams of K (`beam_search`): the position i the
    next step reads ([] int32); per beam row b*K + k, the source src [B*K, S], the decoder
    layers' keys and values of the encoded source and their self-attention caches; per
    example the live beams' ids seqs [B, K, max_len] and log P logp [B, K] (-inf: an empty
    slot), and the pool of finished hypotheses done_seqs [B, K, max_len] and their scores
    done_scores [B, K] (log P / lp)."""

    i: jax.Array
    src: jax.Array
    memory_kvs: Any
    cache: Any
    seqs: jax.Array
    logp: jax.Array
    done_seqs: jax.Array
    done_scores: jax.Array


def _beam_start(model, params, src_BS, max_len: int, bos_id: int, K: int) -> BeamState:
    B = src_BS.shape[0]
    src = jnp.repeat(src_BS, K, axis=0)  # [B*K, S], beam k of example b at row b*K + k
    memory_kvs, cache = _start_decoding(model, params, src, max_len)
    seqs = jnp.zeros((B, K, max_len), jnp.int32).at[:, :, 0].set(bos_id)
    logp = jnp.full((B, K), -jnp.inf).at[:, 0].set(0.0)  # one live beam at the start
    return BeamState(
        jnp.int32(0), src, memory_kvs, cache, seqs, logp, seqs, jnp.full((B, K), -jnp.inf)
    )


def _beam_settled(state: BeamState, max_len: int, alpha: float) -> jax.Array:
    """[B]: the pool is full and its worst score beats the best score a live beam could
    still reach, log P (which can only fall) over the largest penalty lp(max_len - 1)."""
    bound = state.logp[:, 0] / length_penalty(max_len - 1, alpha)
    return state.done_scores[:, -1] > bound  # -inf (an empty slot) never settles


def _beam_advance(
    model, params, state: BeamState, until, max_len: int, eos_id: int, alpha: float,
    early_stop: bool,
) -> BeamState:  # fmt: skip
    """Steps of beam search while i < until (and, with early_stop, some example is not
    settled)."""
    B, K = state.logp.shape
    neg = -jnp.inf

    def step(state: BeamState) -> BeamState:
        i = state.i
        token = state.seqs[:, :, i].reshape(B * K)
        logits, cache = model.apply(
            params, state.memory_kvs, state.src, token, state.cache, i,
            method=Transformer.decode_step,
        )  # fmt: skip
        V = logits.shape[-1]
        log_probs = jax.nn.log_softmax(logits.astype(jnp.float32)).reshape(B, K, V)
        cand = state.logp[..., None] + log_probs
        top, flat = jax.lax.top_k(cand.reshape(B, K * V), min(2 * K, K * V))
        parent, tok = flat // V, (flat % V).astype(jnp.int32)
        grown = jnp.take_along_axis(state.seqs, parent[..., None], axis=1)
        grown = grown.at[:, :, i + 1].set(tok)
        ended = tok == eos_id
        # the live beams: the best K candidates that did not end
        live_score, live = jax.lax.top_k(jnp.where(ended, neg, top), K)
        rows = (jnp.arange(B)[:, None] * K + jnp.take_along_axis(parent, live, 1)).reshape(-1)
        cache = jax.tree.map(lambda c: c[rows], cache)
        seqs = jnp.take_along_axis(grown, live[..., None], axis=1)
        # the finished pool: the best K of the old pool and the candidates that ended here
        scores = jnp.where(ended, top / length_penalty(i + 1, alpha), neg)
        pool_scores = jnp.concatenate([state.done_scores, scores], 1)
        pool_seqs = jnp.concatenate([state.done_seqs, grown], 1)
        done_scores, best = jax.lax.top_k(pool_scores, K)
        done_seqs = jnp.take_along_axis(pool_seqs, best[..., None], axis=1)
        return state._replace(
            i=i + 1, cache=cache, seqs=seqs, logp=live_score, done_seqs=done_seqs,
            done_scores=done_scores,
        )  # fmt: skip

    def go_on(state: BeamState):
        settled = jnp.all(_beam_settled(state, max_len, alpha))
        return (state.i < until) & ~(early_stop & settled)

    return jax.lax.while_loop(go_on, step, state)


def _beam_best(state: BeamState, max_len: int, alpha: float) -> tuple[jax.Array, jax.Array]:
    """(ids [B, max_len], score [B]): the best finished hypothesis, or the best live one
    where none finished."""
    none_done = jnp.isneginf(state.done_scores[:, 0])
    best_seq = jnp.where(none_done[:, None], state.seqs[:, 0], state.done_seqs[:, 0])
    best_score = jnp.where(
        none_done, state.logp[:, 0] / length_penalty(max_len - 1, alpha), state.done_scores[:, 0]
    )
    return best_seq, best_score


def beam_search(
    model: Transformer,
    params,
    src_BS: jax.Array,
    max_len: int,
    bos_id: int,
    eos_id: int,
    beam_size: int = 4,
    alpha: float = 0.6,
    early_stop: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """Beam search of Vaswani et al. 2017, Sec. 6.1 (beam size 4, length penalty alpha = 0.6),
    with a key/value cache; hypotheses that end (EOS) leave the beam for a pool of the best
    `beam_size` finished ones, scored log P / lp (`length_penalty`), as in tensor2tensor.

    With `early_stop` the search ends once, for every example, the pool is full and its worst
    score beats the best any live beam could still reach (its log P, which can only fall,
    over the largest penalty, lp(max_len - 1): tensor2tensor's bound). Nothing a longer search
    could find would enter the pool then, so the result is the full search's, sooner.
    `make_retiring_beam_search` also drops each example from the batch once it settles.

    src: [B, S] ids. Returns (ids [B, max_len] int32: BOS, tokens, EOS, padding, the best
    finished hypothesis, or the best unfinished one where none finished; its score [B]).
    With beam size 1 and alpha = 0 it returns `greedy_decode`'s sequence where that one ends.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size: must be >= 1, got {beam_size}")
    state = _beam_start(model, params, src_BS, max_len, bos_id, beam_size)
    state = _beam_advance(model, params, state, max_len - 1, max_len, eos_id, alpha, early_stop)
    return _beam_best(state, max_len, alpha)


def make_retiring_beam_search(
    model: Transformer,
    max_len: int,
    bos_id: int,
    eos_id: int,
    beam_size: int = 4,
    alpha: float = 0.6,
    segment: int = 8,
):
    """`beam_search` (with its early stop) that retires settled examples: every `segment`
    steps the examples whose pools have settled, by the early stop's bound, take their
    result, and once at most half of the batch is left the rest is gathered into a batch of
    the next power of two (padded with copies of a live example), so later steps cost less.
    Each example's result is `beam_search`'s, as an example's search never reads another's
    (up to float rounding: XLA may sum in another order for another batch size).

    Returns search(params, src [B, S], sizes=None) -> (ids [B, max_len] int32, scores [B])
    as NumPy arrays; a Python loop over jitted pieces (each batch size compiles once), not
    itself jittable. A list passed as `sizes` gets the batch size of every segment.
    """
    if beam_size < 1 or segment < 1:
        raise ValueError(f"beam_size, segment: must be >= 1, got {beam_size}, {segment}")
    K = beam_size
    start = jax.jit(lambda p, src: _beam_start(model, p, src, max_len, bos_id, K))
    advance = jax.jit(
        lambda p, state, until: _beam_advance(
            model, p, state, until, max_len, eos_id, alpha, early_stop=True
        )
    )
    finished = jax.jit(
        lambda state: (_beam_settled(state, max_len, alpha), *_beam_best(state, max_len, alpha))
    )

    @jax.jit
    def take(state: BeamState, idx):
        rows = (idx[:, None] * K + jnp.arange(K)).reshape(-1)
        per_row = (state.src, state.memory_kvs, state.cache)
        src, memory_kvs, cache = jax.tree.map(lambda x: x[rows], per_row)
        per_example = (state.seqs, state.logp, state.done_seqs, state.done_scores)
        seqs, logp, done_seqs, done_scores = jax.tree.map(lambda x: x[idx], per_example)
        return BeamState(state.i, src, memory_kvs, cache, seqs, logp, done_seqs, done_scores)

    def search(params, src_BS, sizes: list | None = None):
        B = src_BS.shape[0]
        ids = np.zeros((B, max_len), np.int32)
        scores = np.zeros(B, np.float32)
        state = start(params, jnp.asarray(src_BS))
        owner = np.arange(B)  # the example each row of the batch holds (-1: padding)
        i = 0
        while True:
            i = min(i + segment, max_len - 1)
            state = advance(params, state, i)
            if sizes is not None:
                sizes.append(len(owner))
            settled, best_ids, best_scores = (np.asarray(x) for x in finished(state))
            done = (settled | (i == max_len - 1)) & (owner >= 0)
            ids[owner[done]], scores[owner[done]] = best_ids[done], best_scores[done]
            owner = np.where(done, -1, owner)
            left = np.flatnonzero(owner >= 0)
            if len(left) == 0:
                return ids, scores
            if len(left) <= len(owner) // 2:
                size = 1 << (len(left) - 1).bit_length()
                idx = np.concatenate([left, np.full(size - len(left), left[0])])
                state = take(state, jnp.asarray(idx))
                owner = np.concatenate([owner[left], np.full(size - len(left), -1)])

    return search
