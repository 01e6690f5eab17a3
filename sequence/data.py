"""Parallel text for the Transformer translation demo: Multi30k En-De sentence pairs, a
word-level tokenizer, vocabularies, padded id arrays and corpus BLEU.

The shipped corpus (`../shared/data/multi30k/SOURCES.md`): Multi30k task 1 (Elliott et al.
2016), gzipped raw text, line i of `<stem>.en.gz` translating line i of `<stem>.de.gz`;
29000 training, 1014 validation and 1000 test (test_2016_flickr) pairs. Any folder of such
line-aligned `<stem>.<lang>.gz` files works. The model is Vaswani et al. 2017 ("Attention is
all you need"); translations are scored with corpus BLEU (Papineni et al. 2002).
"""

from __future__ import annotations

import collections
import dataclasses
import gzip
import math
import os
import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

DEFAULT_DIR = "../shared/data/multi30k"
SPLITS = {"train": "train", "val": "val", "test": "test_2016_flickr"}
PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
_TOKEN = re.compile(r"\w+|[^\w\s]")


class TextDataError(ValueError):
    """Text that cannot be used: the message names the argument and what is wrong."""


def _read_lines(path: str) -> list[str]:
    try:
        with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise TextDataError(f"data_dir: {path!r} is not gzipped UTF-8 text ({e})") from None
    lines = text.split("\n")  # only "\n": str.splitlines would also split at U+2028 etc.
    if lines[-1] == "":
        lines.pop()
    return [line.strip() for line in lines]


def load_parallel(
    split: str = "train", data_dir: str = DEFAULT_DIR, src: str = "en", tgt: str = "de"
) -> tuple[list[str], list[str]]:
    """The line-aligned sentence pairs of one split: reads `<stem>.<src>.gz` and
    `<stem>.<tgt>.gz` (stem from SPLITS) in `data_dir`.

    Returns:
      (source sentences [N], target sentences [N]), each line stripped of surrounding
      whitespace; line i of one translates line i of the other.
    """
    if split not in SPLITS:
        raise TextDataError(f"split: must be one of {sorted(SPLITS)}, got {split!r}")
    stem = SPLITS[split]
    expected = f"{stem}.{src}.gz and {stem}.{tgt}.gz"
    if not os.path.isdir(data_dir):
        raise TextDataError(
            f"data_dir: {data_dir!r} is not a directory; it must hold the gzipped, line-aligned "
            f"files <stem>.{src}.gz / <stem>.{tgt}.gz for stems {sorted(SPLITS.values())}"
        )
    paths = [os.path.join(data_dir, f"{stem}.{lang}.gz") for lang in (src, tgt)]
    for path in paths:
        if not os.path.isfile(path):
            raise TextDataError(
                f"data_dir: {path!r} does not exist; split {split!r} needs {expected} in "
                f"{data_dir!r}"
            )
    src_lines, tgt_lines = (_read_lines(p) for p in paths)
    if len(src_lines) != len(tgt_lines):
        raise TextDataError(
            f"data_dir: {paths[0]!r} has {len(src_lines)} lines but {paths[1]!r} has "
            f"{len(tgt_lines)}; the two sides must be line-aligned"
        )
    return src_lines, tgt_lines


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Deterministic word-level tokens of one sentence: (optionally lower-cased) runs of
    unicode word characters (regex `\\w+`: letters incl. umlauts and ß, digits, _) and single
    other non-space characters; whitespace is dropped.

    "A man, in a blue-shirt." -> ["a", "man", ",", "in", "a", "blue", "-", "shirt", "."]
    """
    if not isinstance(text, str):
        raise TextDataError(f"text: must be a str, got {type(text).__name__}")
    return _TOKEN.findall(text.lower() if lowercase else text)


@dataclasses.dataclass(frozen=True)
class Vocab:
    """Token strings by id, specials first (PAD, BOS, EOS, UNK = 0..3), and the reverse
    lookup `index` (token -> id)."""

    tokens: tuple[str, ...]
    index: dict[str, int] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if tuple(self.tokens[: len(SPECIALS)]) != SPECIALS:
            raise TextDataError(f"tokens: must start with {SPECIALS}, got {self.tokens[:4]}")
        if len(set(self.tokens)) != len(self.tokens):
            raise TextDataError("tokens: must be distinct")
        object.__setattr__(self, "tokens", tuple(self.tokens))
        object.__setattr__(self, "index", {t: i for i, t in enumerate(self.tokens)})

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Tokens [T] -> ids [T]; a token not in the vocabulary becomes UNK."""
        return [self.index.get(t, UNK) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Ids [T] -> tokens up to (not including) the first EOS, PAD and BOS skipped."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if not 0 <= i < len(self.tokens):
                raise TextDataError(f"ids: must lie in 0..{len(self.tokens) - 1}, got {i}")
            if i not in (PAD, BOS):
                out.append(self.tokens[i])
        return out


def build_vocab(
    sentences_tokens: Sequence[Sequence[str]], min_freq: int = 2, max_size: int | None = None
) -> Vocab:
    """A vocabulary from tokenized sentences [N][T]: the 4 specials, then every token seen at
    least `min_freq` times by descending count, ties alphabetical; at most `max_size` entries
    in all (specials included), so the rarest are cut first."""
    if not (isinstance(min_freq, int) and min_freq >= 1):
        raise TextDataError(f"min_freq: must be an int >= 1, got {min_freq!r}")
    if max_size is not None and not (isinstance(max_size, int) and max_size >= 5):
        raise TextDataError(
            f"max_size: must be None or an int >= 5 (4 specials + 1 token), got {max_size!r}"
        )
    counts = collections.Counter(t for sent in sentences_tokens for t in sent)
    words = sorted(
        (t for t, c in counts.items() if c >= min_freq and t not in SPECIALS),
        key=lambda t: (-counts[t], t),
    )
    if max_size is not None:
        words = words[: max_size - len(SPECIALS)]
    return Vocab(SPECIALS + tuple(words))


def encode_batch(
    token_lists: Sequence[Sequence[str]], vocab: Vocab, max_len: int, add_bos: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Padded id matrix for N tokenized sentences: row i = (BOS if add_bos) + ids + EOS, then
    PAD up to max_len. A longer sequence is cut to its first max_len - 1 ids plus EOS.

    Returns:
      (ids_NT int32 [N, max_len], fits_N bool [N]: whether row i held its whole sequence).
    """
    least = 3 if add_bos else 2
    if not (isinstance(max_len, int) and max_len >= least):
        raise TextDataError(
            f"max_len: must be an int >= {least} (room for {'BOS, ' if add_bos else ''}"
            f"a token and EOS), got {max_len!r}"
        )
    ids_NT = np.full((len(token_lists), max_len), PAD, np.int32)
    fits_N = np.zeros(len(token_lists), bool)
    for i, tokens in enumerate(token_lists):
        seq = ([BOS] if add_bos else []) + vocab.encode(tokens) + [EOS]
        fits_N[i] = len(seq) <= max_len
        if not fits_N[i]:
            seq = seq[: max_len - 1] + [EOS]
        ids_NT[i, : len(seq)] = seq
    return ids_NT, fits_N


class TranslationData(NamedTuple):
    """Encoded splits: *_src [N, L] int32 = tokens + EOS + PAD..., *_tgt [N, L] int32 =
    BOS + tokens + EOS + PAD...; *_refs are the untruncated target tokens [N][T] for BLEU."""

    src_vocab: Vocab
    tgt_vocab: Vocab
    train_src: np.ndarray
    train_tgt: np.ndarray
    val_src: np.ndarray
    val_tgt: np.ndarray
    test_src: np.ndarray
    test_tgt: np.ndarray
    val_refs: list[list[str]]
    test_refs: list[list[str]]
    dropped_train: int


def load_translation(
    data_dir: str = DEFAULT_DIR,
    src: str = "en",
    tgt: str = "de",
    min_freq: int = 2,
    max_len: int = 64,
    lowercase: bool = True,
    max_train: int | None = None,
) -> TranslationData:
    """All three splits tokenized and encoded to [N, max_len] int32, with source and target
    vocabularies built (min_freq) from the training pairs only (the first max_train if given).

    Training pairs whose source or target does not fit in max_len are dropped (counted in
    dropped_train); val/test pairs are all kept, truncated, with untruncated references.
    """
    if max_train is not None and not (isinstance(max_train, int) and max_train >= 1):
        raise TextDataError(f"max_train: must be None or an int >= 1, got {max_train!r}")
    tok = {}
    for split in SPLITS:
        s, t = load_parallel(split, data_dir, src, tgt)
        if split == "train":
            s, t = s[:max_train], t[:max_train]
        tok[split] = ([tokenize(x, lowercase) for x in s], [tokenize(x, lowercase) for x in t])
    src_vocab = build_vocab(tok["train"][0], min_freq)
    tgt_vocab = build_vocab(tok["train"][1], min_freq)
    enc = {}
    for split, (s, t) in tok.items():
        s_ids, s_fits = encode_batch(s, src_vocab, max_len, add_bos=False)
        t_ids, t_fits = encode_batch(t, tgt_vocab, max_len, add_bos=True)
        enc[split] = (s_ids, t_ids, s_fits & t_fits)
    keep = enc["train"][2]
    return TranslationData(
        src_vocab=src_vocab,
        tgt_vocab=tgt_vocab,
        train_src=enc["train"][0][keep],
        train_tgt=enc["train"][1][keep],
        val_src=enc["val"][0],
        val_tgt=enc["val"][1],
        test_src=enc["test"][0],
        test_tgt=enc["test"][1],
        val_refs=tok["val"][1],
        test_refs=tok["test"][1],
        dropped_train=int((~keep).sum()),
    )


def bleu_stats(
    hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[str]], max_n: int = 4
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Corpus sums for BLEU (Papineni et al. 2002, Sec. 2.1), one reference per sentence.

    Returns:
      (matches [max_n]: clipped n-gram matches, n = 1..max_n (each hypothesis n-gram counted
      at most as often as it occurs in its reference), totals [max_n]: hypothesis n-grams,
      c: total hypothesis length, r: total reference length).
    """
    if not (isinstance(max_n, int) and max_n >= 1):
        raise TextDataError(f"max_n: must be an int >= 1, got {max_n!r}")
    if len(hypotheses) != len(references):
        raise TextDataError(
            f"hypotheses, references: must have one entry per sentence, got {len(hypotheses)} "
            f"hypotheses and {len(references)} references"
        )
    matches, totals = np.zeros(max_n, np.int64), np.zeros(max_n, np.int64)
    c = r = 0
    for i, (hyp, ref) in enumerate(zip(hypotheses, references, strict=True)):
        if isinstance(hyp, str) or isinstance(ref, str):
            raise TextDataError(
                f"hypotheses, references: must be token lists, got a str at index {i} "
                "(tokenize it first)"
            )
        hyp, ref = list(hyp), list(ref)
        c, r = c + len(hyp), r + len(ref)
        for n in range(1, max_n + 1):
            h = collections.Counter(tuple(hyp[j : j + n]) for j in range(len(hyp) - n + 1))
            g = collections.Counter(tuple(ref[j : j + n]) for j in range(len(ref) - n + 1))
            matches[n - 1] += sum(min(k, g[ng]) for ng, k in h.items())
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    return matches, totals, c, r


def corpus_bleu(
    hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[str]], max_n: int = 4
) -> float:
    """Corpus BLEU of Papineni et al. 2002 in [0, 100] (x100, like sacrebleu), one reference
    per sentence: BP * exp(sum_n log(p_n) / max_n), p_n the corpus-level clipped n-gram
    precisions (Sec. 2.1), BP = 1 if c > r else exp(1 - r / c) (Sec. 2.2.2).

    Takes hypotheses [N][T] and references [N][T'] as token lists. No smoothing: 0.0 when
    some p_n is 0 or the hypotheses are empty (c = 0).
    """
    matches, totals, c, r = bleu_stats(hypotheses, references, max_n)
    if c == 0 or np.any(matches == 0):
        return 0.0
    log_p = np.log(matches / totals).mean()
    bp = 1.0 if c > r else math.exp(1.0 - r / c)
    return float(100.0 * bp * math.exp(log_p))
