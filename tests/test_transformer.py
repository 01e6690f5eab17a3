"""The Transformer (Vaswani et al. 2017): attention against NumPy, masks as properties, the
positional encoding, loss and learning rate against closed forms, cached greedy decoding
against full recomputation, a reversal task learned in seconds, and the run folder."""

import gzip
import itertools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlax_zoo.checkpointing import CheckpointError
from rlax_zoo.config import ConfigError
from sequence.attention import (
    MultiHeadAttention,
    attention_weights,
    causal_mask,
    padding_mask,
    scaled_dot_product_attention,
    sinusoidal_positions,
)
from sequence.data import BOS, EOS, SPECIALS, TranslationData, Vocab
from sequence.transformer import (
    Transformer,
    beam_search,
    greedy_decode,
    inverse_sqrt_schedule,
    label_smoothed_loss,
    length_penalty,
    make_retiring_beam_search,
)
from sequence.translate import (
    TransformerConfig,
    batch_plan,
    evaluate_transformer,
    length_order,
    make_translation_trainer,
    padded_batches,
    run_transformer,
    translate_sentences,
)


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_scaled_dot_product_attention_matches_numpy_with_a_mask():
    rng = np.random.default_rng(0)
    B, T, S, H, K, V = 2, 3, 5, 2, 4, 3
    q, k, v = (
        rng.normal(size=(B, T, H, K)),
        rng.normal(size=(B, S, H, K)),
        rng.normal(size=(B, S, H, V)),
    )
    mask = rng.random((B, 1, T, S)) < 0.6
    mask[0, 0, 1, :] = False  # a query with no key to attend to
    mask[1, 0, :, 0] = True
    out = np.asarray(scaled_dot_product_attention(*map(jnp.asarray, (q, k, v)), jnp.asarray(mask)))
    ref = np.zeros((B, T, H, V))
    for b in range(B):
        for h in range(H):
            for t in range(T):
                allowed = mask[b, 0, t]
                if not allowed.any():
                    continue  # eq. (1) over an empty set: zero output
                logits = q[b, t, h] @ k[b, allowed, h].T / math.sqrt(K)
                ref[b, t, h] = _softmax(logits) @ v[b, allowed, h]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    assert np.all(out[0, 1] == 0.0)
    w = np.asarray(attention_weights(jnp.asarray(q), jnp.asarray(k), jnp.asarray(mask)))
    np.testing.assert_allclose(w.sum(-1)[1], 1.0, rtol=1e-6)  # every row of batch 1 has a key
    assert np.all(w[np.broadcast_to(~mask, w.shape)] == 0.0)


def test_masks_are_causal_and_padding():
    np.testing.assert_array_equal(
        np.asarray(causal_mask(3))[0, 0], [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    )
    m = np.asarray(padding_mask(jnp.array([[1, 1, 0], [1, 0, 0]])))
    assert m.shape == (2, 1, 1, 3)
    np.testing.assert_array_equal(m[:, 0, 0], [[True, True, False], [True, False, False]])


def test_multi_head_attention_is_per_head_attention_then_output_projection():
    rng = np.random.default_rng(1)
    x_q, x_kv = rng.normal(size=(2, 3, 8)), rng.normal(size=(2, 4, 8))
    mha = MultiHeadAttention(num_heads=2, dim=8)
    params = mha.init(jax.random.key(0), jnp.asarray(x_q), jnp.asarray(x_kv))["params"]
    out = np.asarray(mha.apply({"params": params}, jnp.asarray(x_q), jnp.asarray(x_kv)))
    p = jax.tree.map(np.asarray, params)

    def proj(x, name):  # [B, L, 8] @ kernel [8, H, K] + bias [H, K]
        return np.einsum("bld,dhk->blhk", x, p[name]["kernel"]) + p[name]["bias"]

    q, k, v = proj(x_q, "query"), proj(x_kv, "key"), proj(x_kv, "value")
    heads = []
    for h in range(2):  # head_h = Attention(Q W_h^Q, K W_h^K, V W_h^V)
        w = _softmax(np.einsum("btk,bsk->bts", q[:, :, h], k[:, :, h]) / math.sqrt(4))
        heads.append(np.einsum("bts,bsk->btk", w, v[:, :, h]))
    concat = np.stack(heads, 2)  # [B, T, H, K]
    ref = np.einsum("bthk,hkd->btd", concat, p["out"]["kernel"]) + p["out"]["bias"]
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="num_heads"):
        MultiHeadAttention(num_heads=3, dim=8).init(jax.random.key(0), x_q, x_kv)


def test_attention_refuses_mismatched_shapes():
    q, k = jnp.zeros((2, 3, 2, 4)), jnp.zeros((2, 5, 2, 4))
    with pytest.raises(ValueError, match="q_BTHK"):
        attention_weights(jnp.zeros((3, 2, 4)), k)
    with pytest.raises(ValueError, match="key size"):
        attention_weights(q, jnp.zeros((2, 5, 2, 3)))
    with pytest.raises(ValueError, match="mask"):
        attention_weights(q, k, jnp.ones((2, 1, 3, 4), bool))
    with pytest.raises(ValueError, match="v_BSHV"):
        scaled_dot_product_attention(q, k, jnp.zeros((2, 4, 2, 4)))


def test_sinusoidal_positions_closed_form():
    pe = sinusoidal_positions(50, 6)
    # PE(pos, 2i) = sin(pos / 10000^(2i/6)), PE(pos, 2i+1) = cos(pos / 10000^(2i/6))
    assert pe[0].tolist() == [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    np.testing.assert_allclose(pe[1, :2], [math.sin(1.0), math.cos(1.0)], rtol=1e-6)
    np.testing.assert_allclose(
        pe[7, 2:4], [math.sin(7 / 10000 ** (2 / 6)), math.cos(7 / 10000 ** (2 / 6))], rtol=1e-6
    )
    np.testing.assert_allclose(pe[49, 5], math.cos(49 / 10000 ** (4 / 6)), rtol=1e-6)
    with pytest.raises(ValueError, match="dim"):
        sinusoidal_positions(4, 5)


def test_inverse_sqrt_schedule_is_eq_3():
    lr = inverse_sqrt_schedule(512, 4000)
    # optax's count n is step n + 1 of eq. (3)
    np.testing.assert_allclose(float(lr(0)), 512**-0.5 * 4000**-1.5, rtol=1e-6)
    np.testing.assert_allclose(float(lr(3999)), 512**-0.5 * 4000**-0.5, rtol=1e-6)  # the peak
    np.testing.assert_allclose(float(lr(15999)), 512**-0.5 * 16000**-0.5, rtol=1e-6)
    assert float(lr(3998)) < float(lr(3999)) > float(lr(4000))
    np.testing.assert_allclose(
        float(inverse_sqrt_schedule(512, 4000, 2.0)(99)),
        2 * 512**-0.5 * 100 * 4000**-1.5,
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match="warmup_steps"):
        inverse_sqrt_schedule(512, 0)


def test_label_smoothed_loss_matches_numpy_and_skips_padding():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(2, 3, 5))
    targets = np.array([[4, 2, 0], [1, 0, 0]])  # 3 real tokens
    eps = 0.1
    out = label_smoothed_loss(jnp.asarray(logits), jnp.asarray(targets), eps)
    logp = np.log(_softmax(logits))
    real = [(0, 0), (0, 1), (1, 0)]
    smooth = [
        -((1 - eps) * logp[b, t, targets[b, t]] + eps / 5 * logp[b, t].sum()) for b, t in real
    ]
    nll = [-logp[b, t, targets[b, t]] for b, t in real]
    acc = [float(np.argmax(logits[b, t]) == targets[b, t]) for b, t in real]
    np.testing.assert_allclose(float(out.loss), np.mean(smooth), rtol=1e-5)
    np.testing.assert_allclose(float(out.nll), np.mean(nll), rtol=1e-5)
    np.testing.assert_allclose(float(out.accuracy), np.mean(acc))
    assert float(out.tokens) == 3
    with pytest.raises(ValueError, match="targets_BT"):
        label_smoothed_loss(jnp.asarray(logits), jnp.asarray(targets[:, :2]))
    with pytest.raises(ValueError, match="smoothing"):
        label_smoothed_loss(jnp.asarray(logits), jnp.asarray(targets), 1.0)


def _tiny_model(max_len=12, dropout=0.0):
    return Transformer(
        11, 13, dim=16, num_heads=2, hidden=32, num_layers=2, dropout=dropout, max_len=max_len
    )


def test_decoder_is_causal_and_source_padding_is_ignored():
    model = _tiny_model()
    rng = np.random.default_rng(3)
    src = rng.integers(1, 11, (2, 6))
    src[0, 4:] = 0
    tgt = rng.integers(1, 13, (2, 7))
    params = model.init(jax.random.key(0), jnp.asarray(src), jnp.asarray(tgt))
    logits = np.asarray(model.apply(params, jnp.asarray(src), jnp.asarray(tgt)))
    changed = tgt.copy()
    changed[:, 4:] = rng.integers(1, 13, (2, 3))  # positions 4.. of the decoder input
    logits2 = np.asarray(model.apply(params, jnp.asarray(src), jnp.asarray(changed)))
    np.testing.assert_allclose(logits2[:, :4], logits[:, :4], rtol=1e-5, atol=1e-6)
    assert not np.allclose(logits2[:, 4:], logits[:, 4:])
    # more padding columns on the source change nothing
    wider = np.concatenate([src, np.zeros((2, 3), src.dtype)], 1)
    logits3 = np.asarray(model.apply(params, jnp.asarray(wider), jnp.asarray(tgt)))
    np.testing.assert_allclose(logits3, logits, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="src_BS"):
        model.apply(params, jnp.zeros((2, 13), jnp.int32), jnp.asarray(tgt))


def test_greedy_decode_with_cache_equals_full_recomputation():
    model = _tiny_model()
    rng = np.random.default_rng(4)
    src = jnp.asarray(rng.integers(1, 11, (3, 5)))
    params = model.init(jax.random.key(1), src, jnp.ones((3, 4), jnp.int32))
    decode = jax.jit(lambda p, s, eos: greedy_decode(model, p, s, 10, BOS, eos))
    eos = int(np.asarray(decode(params, src, -1))[0, 1])  # sequence 0 ends at once
    out = np.asarray(decode(params, src, eos))
    ids = np.zeros((3, 10), np.int64)
    ids[:, 0] = BOS
    done = np.zeros(3, bool)
    for i in range(9):  # argmax of the full decoder at each position, PAD after EOS
        logits = np.asarray(model.apply(params, src, jnp.asarray(ids[:, : i + 1])))
        nxt = np.where(done, 0, logits[:, i].argmax(-1))
        ids[:, i + 1] = nxt
        done |= nxt == eos
    np.testing.assert_array_equal(out, ids)
    assert ids[0, 1] == eos and np.all(ids[0, 2:] == 0) and not done.all()
    with pytest.raises(ValueError, match="max_len"):
        greedy_decode(model, params, src, 13, BOS, EOS)


def test_beam_search_of_size_one_without_length_penalty_is_greedy_where_greedy_ends():
    # with alpha = 0 a later hypothesis never outscores greedy's first EOS, so beam 1 returns
    # greedy's sequence wherever that one ends; where it does not, the beam returns a
    # hypothesis that ended (any), as tensor2tensor's does
    model = _tiny_model()
    src = jnp.asarray(np.random.default_rng(6).integers(1, 11, (4, 5)))
    params = model.init(jax.random.key(2), src, jnp.ones((4, 4), jnp.int32))
    first = np.asarray(greedy_decode(model, params, src, 10, BOS, EOS))
    for eos in (int(first[1, 3]), int(first[0, 2])):
        greedy = np.asarray(greedy_decode(model, params, src, 10, BOS, eos))
        beam, _ = beam_search(model, params, src, 10, BOS, eos, beam_size=1, alpha=0.0)
        beam = np.asarray(beam)
        ends = (greedy == eos).any(1)
        assert ends.any()
        np.testing.assert_array_equal(beam[ends], greedy[ends])
        assert np.all((beam[~ends] == eos).any(1))


def test_beam_search_stopping_early_returns_the_full_search():
    # sharp random models with a frequent EOS, so that pools fill and the bound is met long
    # before max_len: the early stop must change nothing, ids and scores to the last bit
    model = _tiny_model(max_len=24)
    rng = np.random.default_rng(9)
    for trial in range(4):
        src = jnp.asarray(rng.integers(1, 11, (6, 5)))
        params = model.init(jax.random.key(trial), src, jnp.ones((6, 4), jnp.int32))
        params = jax.tree.map(lambda x: 2.0 * x, params)
        eos = int(np.asarray(greedy_decode(model, params, src, 12, BOS, EOS))[0, 1])
        for beam, alpha in ((2, 0.6), (4, 0.0), (3, 1.0)):
            fast = beam_search(model, params, src, 24, BOS, eos, beam, alpha)
            full = beam_search(model, params, src, 24, BOS, eos, beam, alpha, early_stop=False)
            np.testing.assert_array_equal(fast[0], full[0])
            np.testing.assert_array_equal(fast[1], full[1])


def test_retiring_settled_examples_returns_the_beam_search():
    # examples settle at different steps, so the batch shrinks (6 -> 2 -> 1 here); each
    # example's ids and scores must be beam_search's (the scores to float rounding), whatever
    # batch it finished in
    model = _tiny_model(max_len=24)
    rng = np.random.default_rng(10)
    shrank = False
    for trial in range(3):
        src = jnp.asarray(rng.integers(1, 11, (6, 5)))
        params = model.init(jax.random.key(trial), src, jnp.ones((6, 4), jnp.int32))
        params = jax.tree.map(lambda x: 2.0 * x, params)
        eos = int(np.asarray(greedy_decode(model, params, src, 12, BOS, EOS))[0, 1])
        for beam, alpha in ((2, 0.6), (3, 0.0)):
            search = make_retiring_beam_search(model, 24, BOS, eos, beam, alpha, segment=2)
            sizes = []
            ids, scores = search(params, np.asarray(src), sizes)
            want = beam_search(model, params, src, 24, BOS, eos, beam, alpha)
            np.testing.assert_array_equal(ids, want[0])
            np.testing.assert_allclose(scores, want[1], rtol=1e-5)  # jitted vs op by op
            assert sizes == sorted(sizes, reverse=True) and sizes[0] == 6
            shrank |= sizes[-1] < 6
    assert shrank
    with pytest.raises(ValueError, match="segment"):
        make_retiring_beam_search(model, 24, BOS, EOS, segment=0)


def test_a_beam_wide_enough_to_be_exhaustive_finds_the_best_hypothesis():
    # vocabulary 5, at most 3 tokens: 1 + 4 + 16 = 21 hypotheses that end in EOS. A beam of
    # 40 keeps every live prefix (<= 16) and every candidate (<= 16 x 5 <= 2 x 40), so it must
    # return the best of the 21 by log P(Y | X) / lp(|Y|), computed here by teacher forcing.
    model = Transformer(7, 5, dim=16, num_heads=2, hidden=32, num_layers=1, dropout=0.0, max_len=8)
    src = jnp.asarray([[4, 5, 6, 2]])
    params = model.init(jax.random.key(3), src, jnp.ones((1, 4), jnp.int32))
    params = jax.tree.map(lambda x: 3.0 * x, params)  # sharper distributions
    eos, alpha = 2, 0.6
    best = (-np.inf, None)
    for m in (1, 2, 3):
        for body in itertools.product([t for t in range(5) if t != eos], repeat=m - 1):
            y = [BOS, *body, eos]
            logits = np.asarray(model.apply(params, src, jnp.asarray([y[:-1]])))[0]
            logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
            score = sum(logp[j, y[j + 1]] for j in range(m)) / ((5 + m) / 6) ** alpha
            best = max(best, (score, y))
    ids, score = beam_search(model, params, src, 4, BOS, eos, beam_size=40, alpha=alpha)
    expected = best[1] + [0] * (4 - len(best[1]))
    np.testing.assert_array_equal(np.asarray(ids)[0], expected)
    np.testing.assert_allclose(float(score[0]), best[0], rtol=1e-4)
    np.testing.assert_allclose(float(length_penalty(4, 0.6)), (9 / 6) ** 0.6, rtol=1e-6)
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(model, params, src, 4, BOS, eos, beam_size=0)


def _reversal_data(n, length, vocab, seed):
    """Source: tokens + EOS; target: BOS + the tokens reversed + EOS (ids 4.. are words)."""
    rng = np.random.default_rng(seed)
    words = rng.integers(4, vocab, (n, length))
    src = np.concatenate([words, np.full((n, 1), EOS)], 1).astype(np.int32)
    tgt = np.concatenate([np.full((n, 1), BOS), words[:, ::-1], np.full((n, 1), EOS)], 1)
    return src, tgt.astype(np.int32)


def test_batch_plan_covers_each_pair_once_per_epoch_grouped_by_length():
    lengths = np.random.default_rng(5).integers(1, 40, 1000)
    plan = batch_plan(1000, lengths, 7, seed=3, epoch=2)
    flat = np.concatenate(plan)
    assert all(len(b) == 7 for b in plan) and len(np.unique(flat)) == len(flat)
    assert len(plan) == 1000 // (7 * 64) * 64 + (1000 % (7 * 64)) // 7  # whole batches per pool
    # sorted pools: a batch's lengths span far less than random batches' would
    assert np.median([np.ptp(lengths[b]) for b in plan]) <= 2
    again = batch_plan(1000, lengths, 7, seed=3, epoch=2)
    assert all(np.array_equal(a, b) for a, b in zip(plan, again, strict=True))
    assert not np.array_equal(plan[0], batch_plan(1000, lengths, 7, seed=3, epoch=3)[0])


def test_trainer_learns_to_reverse_sequences():
    # 6 words from a vocabulary of 12 reversed: greedy decoding gets most test sequences
    # exactly right after 400 steps (a model that only copies gets 1/12^3 of them)
    src, tgt = _reversal_data(2000, 6, 16, 0)
    test_src, test_tgt = _reversal_data(200, 6, 16, 1)
    vocab = Vocab(SPECIALS + tuple(f"w{i}" for i in range(4, 16)))
    data = TranslationData(
        vocab, vocab, src, tgt, test_src, test_tgt, test_src, test_tgt, [], [], 0
    )
    config = TransformerConfig(
        dim=32,
        num_heads=2,
        hidden=64,
        num_layers=2,
        dropout=0.0,
        label_smoothing=0.0,
        batch_size=64,
        max_len=10,
        warmup_steps=100,
        lr_scale=2.0,
        eval_batch_size=100,
    )
    trainer = make_translation_trainer(config, data)
    state = trainer.init(jax.random.PRNGKey(0))
    before = trainer.evaluate(state.params, test_src, test_tgt)
    state, m = trainer.train_chunk(state, 400)
    after = trainer.evaluate(state.params, test_src, test_tgt)
    assert after["nll"] < 0.1 * before["nll"], (before, after)
    out = trainer.translate(state.params, test_src)
    exact = np.mean(
        [np.array_equal(o[: tgt.shape[1]], t) for o, t in zip(out, test_tgt, strict=True)]
    )
    assert exact > 0.9, exact
    assert np.all(np.isfinite(np.asarray(m["loss"])))
    # sources of 1-6 words: batches cut from them sorted by length decode each sentence as
    # the batches in the given order do, and the output keeps the given order
    cut = np.random.default_rng(2).integers(1, 7, len(test_src))
    ragged = np.zeros_like(test_src)
    for row, (words, n) in enumerate(zip(test_src, cut, strict=True)):
        ragged[row, : n + 1] = np.append(words[:n], EOS)
    assert not np.array_equal(length_order(ragged), np.arange(len(ragged)))
    sorted_out = trainer.translate(state.params, ragged, 2)
    np.testing.assert_array_equal(
        sorted_out, trainer.translate(state.params, ragged, 2, by_length=False)
    )


def test_length_order_and_padded_batches():
    src = np.array([[5, 6, 2, 0], [2, 0, 0, 0], [7, 2, 0, 0], [4, 2, 0, 0], [5, 5, 5, 2]])
    np.testing.assert_array_equal(length_order(src), [1, 2, 3, 0, 4])  # stable among ties
    batches = padded_batches(src, 2)
    assert [b.shape for b in batches] == [(2, 4)] * 3
    np.testing.assert_array_equal(np.concatenate(batches)[:5], src)
    np.testing.assert_array_equal(batches[2][1], [EOS, 0, 0, 0])


def test_config_errors_name_the_field():
    src, tgt = _reversal_data(100, 3, 8, 0)
    vocab = Vocab(SPECIALS + tuple(f"w{i}" for i in range(4, 8)))
    data = TranslationData(vocab, vocab, src, tgt, src, tgt, src, tgt, [], [], 0)
    with pytest.raises(ConfigError, match="num_heads"):
        make_translation_trainer(TransformerConfig(dim=30, num_heads=4), data)
    with pytest.raises(ConfigError, match="batch_size"):
        make_translation_trainer(TransformerConfig(batch_size=101), data)


def _write_corpus(folder, seed=0):
    """A small line-aligned corpus in the Multi30k layout: each "German" sentence spells the
    "English" one word by word in another alphabet (w3 -> v3), so the pairs translate."""
    rng = np.random.default_rng(seed)
    for stem, n in (("train", 300), ("val", 40), ("test_2016_flickr", 30)):
        lines = [rng.integers(0, 12, rng.integers(3, 9)) for _ in range(n)]
        for lang, letter in (("en", "w"), ("de", "v")):
            with gzip.open(os.path.join(folder, f"{stem}.{lang}.gz"), "wt") as f:
                f.write("".join(" ".join(f"{letter}{i}" for i in line) + " .\n" for line in lines))
    return str(folder)


def test_run_folder_resumes_to_the_uninterrupted_run_and_reports_bleu(tmp_path, capsys):
    config = TransformerConfig(
        data_dir=_write_corpus(tmp_path),
        dim=16,
        num_heads=2,
        hidden=32,
        num_layers=1,
        batch_size=32,
        iterations=6,
        eval_every=2,
        max_len=32,
        translations_shown=3,
        eval_batch_size=512,
    )
    whole = run_transformer(config, run_dir=str(tmp_path / "whole"), progress=False)
    part = run_transformer(config, run_dir=str(tmp_path / "part"), progress=False, max_chunks=2)
    assert part.interrupted and not part.results
    resumed = run_transformer(resume=str(tmp_path / "part"), progress=False)
    assert not resumed.interrupted
    for a, b in zip(
        jax.tree.leaves(whole.state.params), jax.tree.leaves(resumed.state.params), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with open(tmp_path / "whole" / "results.json") as f:
        results = json.load(f)
    assert results["iterations"] == 6 and 0.0 <= results["test_bleu"] <= 100.0
    assert results["test_bleu"] == resumed.results["test_bleu"]
    assert results["beam_size"] == 4 and 0.0 <= results["test_bleu_greedy"] <= 100.0
    # evaluating again with beam 1 gives the greedy numbers; training fields are refused
    again = evaluate_transformer(str(tmp_path / "whole"), beam_size=1)
    assert again.results["test_bleu"] == results["test_bleu_greedy"]
    assert again.results["val_bleu"] == results["val_bleu_greedy"]
    # the command line translates raw text as the run's evaluation did (sentence 0 of test)
    from rlax_zoo import cli
    from sequence.data import load_parallel

    first_test = load_parallel("test", config.data_dir)[0][0]
    assert cli.main(["translate", "--run", str(tmp_path / "whole"), first_test]) == 0
    with open(tmp_path / "whole" / "translations.txt") as f:
        beam_out = f.read().split("\n")[2].removeprefix("out: ")
    assert capsys.readouterr().out.strip() == beam_out
    with pytest.raises(ConfigError, match="sentences: sentence 0 has 40 tokens"):
        translate_sentences(str(tmp_path / "whole"), ["a " * 40])
    with pytest.raises(ConfigError, match="dim: changes the training"):
        evaluate_transformer(str(tmp_path / "whole"), dim=32)
    with pytest.raises(CheckpointError, match="no finished run"):
        evaluate_transformer(str(tmp_path / "x"))
    assert os.path.getsize(tmp_path / "whole" / "translations.txt") > 0
    rows = whole.metrics
    assert [r["iteration"] for r in rows] == [2, 4, 6]
    assert all(np.isfinite(r["val_nll"]) for r in rows)
    with pytest.raises(ConfigError, match="data_dir"):
        run_transformer(
            TransformerConfig(data_dir=str(tmp_path / "none")), run_dir=str(tmp_path / "x")
        )
    assert not os.path.exists(tmp_path / "x")
