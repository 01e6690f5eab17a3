"""Translation data: the tokenizer, vocabularies and padded ids by hand, corpus BLEU against
hand arithmetic and a brute-force count, the Multi30k files, and the error messages."""

import gzip
import math
import os
import random

import numpy as np
import pytest

from sequence.data import (
    BOS,
    DEFAULT_DIR,
    EOS,
    PAD,
    SPLITS,
    UNK,
    TextDataError,
    Vocab,
    bleu_stats,
    build_vocab,
    corpus_bleu,
    encode_batch,
    load_parallel,
    load_translation,
    tokenize,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, DEFAULT_DIR)
# the facts of the shipped corpus, checked where the checkout sits beside ../shared (the
# loader's logic is checked on hand-built corpora below, wherever the checkout is)
shipped = pytest.mark.skipif(
    not os.path.isdir(DATA), reason=f"the shipped Multi30k is not at {DATA}"
)


def _write(folder, name, lines):
    with gzip.open(os.path.join(folder, name), "wt", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))


# --- tokenizer --------------------------------------------------------------------------


def test_tokenize_examples():
    assert tokenize("A man, in a blue-shirt.") == [
        "a", "man", ",", "in", "a", "blue", "-", "shirt", ".",
    ]  # fmt: skip
    assert tokenize("Zwei Männer, die Fußball spielen.") == [
        "zwei", "männer", ",", "die", "fußball", "spielen", ".",
    ]  # fmt: skip
    assert tokenize("Zwei Männer, die Fußball spielen.", lowercase=False) == [
        "Zwei", "Männer", ",", "die", "Fußball", "spielen", ".",
    ]  # fmt: skip
    # quotes, apostrophes and repeated punctuation are single tokens; \xa0, tabs vanish
    assert tokenize("„Er\xa0sagt:\t“Hi!!” It's 3 o'clock") == [
        "„", "er", "sagt", ":", "“", "hi", "!", "!", "”", "it", "'", "s", "3", "o", "'", "clock",
    ]  # fmt: skip
    assert tokenize("   ") == []


# --- vocabulary and ids -----------------------------------------------------------------

# counts: c 4, a 3, b 3, e 1, d 1 ("b" and "e" are seen before "a" and "d")
CORPUS = [["c", "b", "a", "c"], ["e", "b", "a", "c"], ["c", "d", "b", "a"]]
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]


def test_build_vocab_order_min_freq_and_max_size():
    # by descending count, ties alphabetical (not first-seen)
    assert list(build_vocab(CORPUS, min_freq=1).tokens) == SPECIALS + ["c", "a", "b", "d", "e"]
    assert list(build_vocab(CORPUS).tokens) == SPECIALS + ["c", "a", "b"]
    assert list(build_vocab(CORPUS, min_freq=4).tokens) == SPECIALS + ["c"]
    assert list(build_vocab(CORPUS, min_freq=5).tokens) == SPECIALS
    assert list(build_vocab(CORPUS, min_freq=1, max_size=6).tokens) == SPECIALS + ["c", "a"]
    v = build_vocab(CORPUS, min_freq=1)
    assert len(v) == 9 and [v.index[t] for t in SPECIALS] == [PAD, BOS, EOS, UNK] == [0, 1, 2, 3]
    assert build_vocab(CORPUS) == build_vocab(list(reversed(CORPUS)))  # order-independent


def test_encode_decode():
    v = build_vocab(CORPUS)  # c 4, a 5, b 6
    assert v.encode(["c", "zzz", "a", "b", "d"]) == [4, UNK, 5, 6, UNK]
    assert v.decode(v.encode(["b", "zzz", "c"])) == ["b", "<unk>", "c"]
    # BOS and PAD skipped, everything after the first EOS ignored
    assert v.decode([BOS, 4, PAD, 5, EOS, 6, EOS, PAD]) == ["c", "a"]
    assert v.decode(np.array([EOS, 4], np.int32)) == []
    with pytest.raises(TextDataError, match="ids: must lie in 0..6, got 7"):
        v.decode([4, 7])


def test_encode_batch_padding_bos_eos_and_truncation():
    v = build_vocab(CORPUS, min_freq=1)  # c 4, a 5, b 6, d 7, e 8
    lists = [["c", "a"], ["b", "a", "c", "d"], [], ["zzz"]]
    ids, fits = encode_batch(lists, v, max_len=5, add_bos=True)
    assert ids.dtype == np.int32 and fits.dtype == bool
    np.testing.assert_array_equal(
        ids,
        [
            [BOS, 4, 5, EOS, PAD],
            [BOS, 6, 5, 4, EOS],  # BOS b a c d EOS is 6 long: cut, still ending in EOS
            [BOS, EOS, PAD, PAD, PAD],
            [BOS, UNK, EOS, PAD, PAD],
        ],
    )
    np.testing.assert_array_equal(fits, [True, False, True, True])
    ids, fits = encode_batch(lists, v, max_len=5, add_bos=False)
    np.testing.assert_array_equal(
        ids,
        [[4, 5, EOS, PAD, PAD], [6, 5, 4, 7, EOS], [EOS, PAD, PAD, PAD, PAD], [UNK, EOS, 0, 0, 0]],
    )
    np.testing.assert_array_equal(fits, [True, True, True, True])  # 5 == max_len fits
    ids, fits = encode_batch(lists[1:2], v, max_len=2, add_bos=False)
    np.testing.assert_array_equal(ids, [[6, EOS]])
    assert not fits[0]
    assert encode_batch([], v, max_len=4, add_bos=True)[0].shape == (0, 4)


# --- BLEU -------------------------------------------------------------------------------


def test_corpus_bleu_by_hand():
    hyps = [tokenize("the cat sat on the mat"), tokenize("a big dog runs")]
    refs = [tokenize("the cat is on the mat"), tokenize("a big dog runs home now")]
    # sentence 1: unigrams the,the,cat,on,mat match (sat not) 5/6; bigrams "the cat", "on the",
    # "the mat" 3/5; trigrams "on the mat" 1/4; 4-grams 0/3.
    # sentence 2 is a prefix of its reference: 4/4, 3/3, 2/2, 1/1.
    matches, totals, c, r = bleu_stats(hyps, refs)
    np.testing.assert_array_equal(matches, [9, 6, 3, 1])
    np.testing.assert_array_equal(totals, [10, 8, 6, 4])
    assert (c, r) == (10, 12)
    # p = 9/10, 6/8, 3/6, 1/4; c = 10 <= r = 12 so BP = exp(1 - 12/10) = exp(-0.2)
    # BLEU = 100 * exp(-0.2) * (0.9 * 0.75 * 0.5 * 0.25) ** (1/4) = 100 * 0.81873 * 0.53895
    expected = 100 * math.exp(-0.2) * (0.9 * 0.75 * 0.5 * 0.25) ** 0.25
    assert expected == pytest.approx(44.126, abs=1e-3)
    assert corpus_bleu(hyps, refs) == pytest.approx(expected, rel=1e-12)
    # BLEU-2 of the same: 100 * exp(-0.2) * sqrt(0.9 * 0.75)
    assert corpus_bleu(hyps, refs, max_n=2) == pytest.approx(
        100 * math.exp(-0.2) * math.sqrt(0.675), rel=1e-12
    )
    # sentence 1 alone has no matching 4-gram: p4 = 0/3 and, unsmoothed, BLEU = 0
    assert corpus_bleu(hyps[:1], refs[:1]) == 0.0
    # ... but its BLEU-3 is positive: c = r = 6, BP = 1, (5/6 * 3/5 * 1/4) ** (1/3)
    assert corpus_bleu(hyps[:1], refs[:1], max_n=3) == pytest.approx(
        100 * (5 / 6 * 3 / 5 * 1 / 4) ** (1 / 3), rel=1e-12
    )


def test_corpus_bleu_identity_clipping_brevity_and_empty():
    sents = [tokenize("two men play football ."), tokenize("a dog runs on the green grass")]
    assert corpus_bleu(sents, sents) == 100.0
    # clipping: "the" occurs 4 times in the hypothesis but once in the reference: p1 = 1/4,
    # c = 4 > r = 2 so BP = 1 and BLEU-1 = 25
    assert bleu_stats([["the"] * 4], [["the", "cat"]], max_n=1)[0][0] == 1
    assert corpus_bleu([["the"] * 4], [["the", "cat"]], max_n=1) == pytest.approx(25.0)
    # brevity: a 2-token hypothesis with perfect precision against 6 reference tokens,
    # BP = exp(1 - 6/2) = exp(-2)
    hyp, ref = tokenize("the cat"), tokenize("the cat sat on the mat")
    assert corpus_bleu([hyp], [ref], max_n=2) == pytest.approx(100 * math.exp(-2), rel=1e-12)
    # the hypothesis is shorter than n for every sentence: no n-grams, so p_n = 0
    assert corpus_bleu([hyp], [ref], max_n=3) == 0.0
    assert corpus_bleu([[], []], sents) == 0.0  # c = 0
    assert corpus_bleu([], []) == 0.0


def _brute_bleu(hyps, refs, max_n):
    """Independent count: n-grams as lists of tuples, clipping by list.count."""
    log_p = 0.0
    for n in range(1, max_n + 1):
        hit = tot = 0
        for h, g in zip(hyps, refs, strict=True):
            hg = [tuple(h[i : i + n]) for i in range(len(h) - n + 1)]
            gg = [tuple(g[i : i + n]) for i in range(len(g) - n + 1)]
            hit += sum(min(hg.count(x), gg.count(x)) for x in set(hg))
            tot += len(hg)
        if hit == 0:
            return 0.0
        log_p += math.log(hit / tot) / max_n
    c, r = sum(map(len, hyps)), sum(map(len, refs))
    return 100 * min(1.0, math.exp(1 - r / c)) * math.exp(log_p)


def test_corpus_bleu_matches_brute_force():
    rng = random.Random(0)
    words = "a b c d e".split()
    for trial in range(30):
        n_sent = rng.randint(1, 6)
        hyps = [rng.choices(words, k=rng.randint(3, 12)) for _ in range(n_sent)]
        refs = [rng.choices(words, k=rng.randint(3, 12)) for _ in range(n_sent)]
        for max_n in (1, 2, 4):
            assert corpus_bleu(hyps, refs, max_n) == pytest.approx(
                _brute_bleu(hyps, refs, max_n), rel=1e-12, abs=1e-12
            ), (trial, max_n)


# --- Multi30k ---------------------------------------------------------------------------


@shipped
def test_load_parallel_real_files(monkeypatch):
    monkeypatch.chdir(ROOT)  # the default directory is relative to the repository root
    sizes = {split: len(load_parallel(split)[0]) for split in SPLITS}
    assert sizes == {"train": 29000, "val": 1014, "test": 1000}
    en, de = load_parallel("train")
    assert len(de) == 29000 and all(en) and all(de)
    assert en[0] == "Two young, White males are outside near many bushes."
    assert de[0] == "Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche."
    de2, en2 = load_parallel("val", DATA, src="de", tgt="en")  # either direction
    assert (en2, de2) == load_parallel("val", DATA)


def _check_rows(ids, vocab, bos):
    assert ids.dtype == np.int32 and ids.min() >= 0 and ids.max() < len(vocab)
    assert np.all((ids == EOS).sum(1) == 1)
    np.testing.assert_array_equal(ids[:, 0] == BOS, bos)
    assert np.all((ids == BOS).sum(1) == (1 if bos else 0))
    after_eos = np.cumsum(ids == EOS, axis=1) - (ids == EOS) > 0
    assert np.all(ids[after_eos] == PAD) and not np.any(ids[~after_eos] == PAD)


@shipped
def test_load_translation_subset():
    d = load_translation(DATA, max_train=2000, max_len=24)
    en, de = load_parallel("train", DATA)
    en_tok, de_tok = [tokenize(s) for s in en[:2000]], [tokenize(s) for s in de[:2000]]
    # a pair is kept when tokens + EOS (source) and BOS + tokens + EOS (target) fit in 24
    keep = [len(s) + 1 <= 24 and len(t) + 2 <= 24 for s, t in zip(en_tok, de_tok, strict=True)]
    assert d.dropped_train == keep.count(False) > 0
    assert d.train_src.shape == d.train_tgt.shape == (sum(keep), 24)
    assert d.val_src.shape == d.val_tgt.shape == (1014, 24)
    assert d.test_src.shape == d.test_tgt.shape == (1000, 24)
    # vocabularies from the 2000 training pairs only: 4 specials + tokens seen at least twice
    for vocab, toks in ((d.src_vocab, en_tok), (d.tgt_vocab, de_tok)):
        counts = {}
        for sent in toks:
            for t in sent:
                counts[t] = counts.get(t, 0) + 1
        assert set(vocab.tokens[4:]) == {t for t, k in counts.items() if k >= 2}
    for ids, vocab, bos in (
        (d.train_src, d.src_vocab, False),
        (d.train_tgt, d.tgt_vocab, True),
        (d.val_src, d.src_vocab, False),
        (d.val_tgt, d.tgt_vocab, True),
        (d.test_src, d.src_vocab, False),
        (d.test_tgt, d.tgt_vocab, True),
    ):
        _check_rows(ids, vocab, bos)
    kept = [i for i, k in enumerate(keep) if k]
    i = kept[0]
    unk = lambda v, toks: [t if t in v.index else "<unk>" for t in toks]
    assert d.src_vocab.decode(d.train_src[0]) == unk(d.src_vocab, en_tok[i])
    assert d.tgt_vocab.decode(d.train_tgt[-1]) == unk(d.tgt_vocab, de_tok[kept[-1]])
    # references: the untruncated tokens of the raw target lines
    val_de, test_de = load_parallel("val", DATA)[1], load_parallel("test", DATA)[1]
    assert d.val_refs == [tokenize(s) for s in val_de]
    assert d.test_refs == [tokenize(s) for s in test_de]
    long = [j for j, r in enumerate(d.val_refs) if len(r) + 2 > 24]
    assert long, "expected val sentences longer than max_len"
    for j in long:  # truncated ids (BOS + 22 tokens + EOS), full references
        assert d.tgt_vocab.decode(d.val_tgt[j]) == unk(d.tgt_vocab, d.val_refs[j][:22])


@shipped
def test_load_translation_full_default_keeps_every_pair(monkeypatch):
    monkeypatch.chdir(ROOT)
    d = load_translation()  # the longest Multi30k sentence has 45 tokens: all fit in 64
    assert d.dropped_train == 0 and d.train_src.shape == d.train_tgt.shape == (29000, 64)
    assert len(d.src_vocab) < len(d.tgt_vocab)  # German has more word forms


def test_load_translation_by_hand(tmp_path):
    _write(tmp_path, "train.en.gz", ["A b.", "a b c", "b"])
    _write(tmp_path, "train.de.gz", ["X y", "x", "x y z"])
    for stem in ("val", "test_2016_flickr"):
        _write(tmp_path, f"{stem}.en.gz", ["a q"])
        _write(tmp_path, f"{stem}.de.gz", ["x y q q"])
    d = load_translation(str(tmp_path), min_freq=1, max_len=4)
    # en counts a 2, b 3, . 1, c 1 -> b a . c; de counts x 3, y 2, z 1 -> x y z; q is val-only
    assert d.src_vocab.tokens[4:] == ("b", "a", ".", "c")
    assert d.tgt_vocab.tokens[4:] == ("x", "y", "z")
    # pair 1: "a b ." + EOS = 4 fits; pair 3: BOS x y z EOS = 5 does not -> dropped
    assert d.dropped_train == 1
    np.testing.assert_array_equal(d.train_src, [[5, 4, 6, EOS], [5, 4, 7, EOS]])
    np.testing.assert_array_equal(d.train_tgt, [[BOS, 4, 5, EOS], [BOS, 4, EOS, PAD]])
    np.testing.assert_array_equal(d.val_src, [[5, UNK, EOS, PAD]])
    np.testing.assert_array_equal(d.val_tgt, [[BOS, 4, 5, EOS]])  # truncated
    assert d.val_refs == d.test_refs == [["x", "y", "q", "q"]]
    d = load_translation(str(tmp_path), min_freq=1, max_len=4, max_train=1)
    assert d.src_vocab.tokens[4:] == (".", "a", "b") and d.dropped_train == 0


# --- errors -----------------------------------------------------------------------------


def test_errors(tmp_path):
    with pytest.raises(TextDataError, match=r"split: must be one of \['test', 'train', 'val'\]"):
        load_parallel("dev", DATA)
    with pytest.raises(TextDataError, match="data_dir: .*nope.* is not a directory.*train"):
        load_parallel("train", str(tmp_path / "nope"))
    _write(tmp_path, "train.en.gz", ["one", "two", "three"])
    with pytest.raises(TextDataError, match="data_dir: .*train.de.gz.* does not exist"):
        load_parallel("train", str(tmp_path))
    _write(tmp_path, "train.de.gz", ["eins", "zwei"])
    with pytest.raises(TextDataError, match="has 3 lines but .*train.de.gz.* has 2"):
        load_parallel("train", str(tmp_path))
    with open(tmp_path / "val.en.gz", "w") as f:
        f.write("plain text")
    _write(tmp_path, "val.de.gz", ["x"])
    with pytest.raises(TextDataError, match="data_dir: .*val.en.gz.* is not gzipped"):
        load_parallel("val", str(tmp_path))
    with pytest.raises(TextDataError, match="min_freq: must be an int >= 1, got 0"):
        build_vocab(CORPUS, min_freq=0)
    with pytest.raises(TextDataError, match="max_size: must be None or an int >= 5"):
        build_vocab(CORPUS, max_size=4)
    with pytest.raises(TextDataError, match="tokens: must start with"):
        Vocab(("a", "b"))
    v = build_vocab(CORPUS)
    with pytest.raises(TextDataError, match="max_len: must be an int >= 2.*got 1"):
        encode_batch([["a"]], v, max_len=1, add_bos=False)
    with pytest.raises(TextDataError, match="max_len: must be an int >= 3.*got 2"):
        encode_batch([["a"]], v, max_len=2, add_bos=True)
    with pytest.raises(TextDataError, match="max_train: must be None or an int >= 1"):
        load_translation(DATA, max_train=0)
    with pytest.raises(TextDataError, match="hypotheses, references: .*2 hypotheses and 1"):
        corpus_bleu([["a"], ["b"]], [["a"]])
    with pytest.raises(TextDataError, match="max_n: must be an int >= 1, got 0"):
        corpus_bleu([["a"]], [["a"]], max_n=0)
    with pytest.raises(TextDataError, match="must be token lists, got a str at index 0"):
        corpus_bleu(["a cat"], ["a cat"])
    with pytest.raises(TextDataError, match="text: must be a str"):
        tokenize(["a"])
