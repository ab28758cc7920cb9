"""Tokenisation: words, word n-grams and character n-grams, with a vocabulary fitted on the
train split only.

The loaded bundle holds the raw texts as UTF-8 bytes (``{"utf8": uint8 (N, B), "nbytes":
long (N,)}``), so that the data, its fingerprint and its split all live in the bundle. Each
trial's :func:`prepare` turns them into ``{"tokens": long (N, L), "lengths": long (N,)}``
with the vocabulary size and maximum length of its config; tokenisations are cached per
tokeniser settings, so trials that share them share the work.
"""

from __future__ import annotations

import re
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from automl import DataBundle, Split

TOKEN_RE = re.compile(r"\w+|[^\w\s]")
PAD, UNK = 0, 1
SPECIALS = ("<pad>", "<unk>")
#: Texts longer than this many characters are cut when stored.
MAX_CHARS = 2000
_CACHE: OrderedDict[tuple, tuple[DataBundle, Any]] = OrderedDict()
_CACHE_SIZE = 8


def words(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens."""
    return TOKEN_RE.findall(text.lower())


def features(text: str, word_ngrams: int = 1, char_ngrams: int = 0) -> list[str]:
    """The words of ``text`` in order, then its word n-grams (``n`` = 2..``word_ngrams``,
    joined by a space) and the character ``char_ngrams``-grams of each word (marked ``#``,
    with ``<`` and ``>`` at the word's ends), as in fastText."""
    w = words(text)
    out = list(w)
    for n in range(2, word_ngrams + 1):
        out += [" ".join(w[i:i + n]) for i in range(len(w) - n + 1)]
    if char_ngrams > 0:
        for word in w:
            padded = f"<{word}>"
            out += ["#" + padded[i:i + char_ngrams] for i in range(max(1, len(padded) - char_ngrams + 1))]
    return out


@dataclass
class Tokenizer:
    """A fitted vocabulary and the settings to apply it (JSON-able via :meth:`to_state`)."""

    vocab: list[str]
    max_len: int
    word_ngrams: int = 1
    char_ngrams: int = 0

    @classmethod
    def fit(cls, texts: list[str], vocab_size: int, max_len: int, word_ngrams: int = 1,
            char_ngrams: int = 0) -> Tokenizer:
        """Keep the ``vocab_size - 2`` most frequent features of ``texts`` (the train split;
        ties broken alphabetically), after the ``<pad>`` and ``<unk>`` ids 0 and 1."""
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(features(text, word_ngrams, char_ngrams))
        ranked = sorted(counts, key=lambda t: (-counts[t], t))[:max(0, vocab_size - len(SPECIALS))]
        return cls(list(SPECIALS) + ranked, max_len, word_ngrams, char_ngrams)

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ids ``(N, L)`` (``L`` the longest encoded text, at most ``max_len``) and
        lengths; an empty text becomes one ``<unk>``, so every length is at least 1."""
        index = {t: i for i, t in enumerate(self.vocab)}
        rows = []
        for text in texts:
            ids = [index.get(f, UNK) for f in features(text, self.word_ngrams, self.char_ngrams)][:self.max_len]
            rows.append(ids or [UNK])
        width = max(len(r) for r in rows) if rows else 1
        tokens = np.zeros((len(rows), width), dtype=np.int64)
        for i, ids in enumerate(rows):
            tokens[i, :len(ids)] = ids
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        return torch.from_numpy(tokens), lengths

    def to_state(self) -> dict[str, Any]:
        """Everything needed to tokenise new texts the same way."""
        return {"pattern": TOKEN_RE.pattern, "lowercase": True, "max_len": self.max_len,
                "word_ngrams": self.word_ngrams, "char_ngrams": self.char_ngrams,
                "pad_id": PAD, "unk_id": UNK, "vocab": list(self.vocab)}


def encode_texts(texts: list[str]) -> dict[str, torch.Tensor]:
    """Raw texts as inputs of a loaded bundle: padded UTF-8 bytes and their counts."""
    raw = [t[:MAX_CHARS].encode("utf-8") for t in texts]
    width = max((len(b) for b in raw), default=1) or 1
    buf = np.zeros((len(raw), width), dtype=np.uint8)
    for i, b in enumerate(raw):
        buf[i, :len(b)] = np.frombuffer(b, dtype=np.uint8)
    return {"utf8": torch.from_numpy(buf), "nbytes": torch.tensor([len(b) for b in raw], dtype=torch.long)}


def texts_of(inputs: dict[str, torch.Tensor]) -> list[str]:
    """The raw texts of inputs made by :func:`encode_texts` (what a loaded split holds)."""
    buf, counts = inputs["utf8"].cpu().numpy(), inputs["nbytes"].cpu().tolist()
    return [buf[i, :n].tobytes().decode("utf-8", errors="replace") for i, n in enumerate(counts)]


def decode_texts(split: Split) -> list[str]:
    """The raw texts of a split loaded by this plugin."""
    return texts_of(split.inputs)


def _cached(key: tuple, data: DataBundle, make):
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key][1]
    value = make()
    _CACHE[key] = (data, value)  # holding ``data`` keeps its id from being reused
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return value


def split_texts(data: DataBundle) -> dict[str, list[str]]:
    """The decoded texts of the three splits (cached per bundle)."""
    return _cached(("texts", id(data)), data,
                   lambda: {name: decode_texts(data.split(name)) for name in ("train", "val", "test")})


def tokenize_bundle(data: DataBundle, vocab_size: int, max_len: int, word_ngrams: int = 1,
                    char_ngrams: int = 0) -> DataBundle:
    """The bundle as token ids, with a :class:`Tokenizer` fitted on the train texts only.

    ``info.extra`` gets ``vocab_size`` (the fitted size, at most the requested one) and
    ``max_len``; ``state["tokenizer"]`` records the vocabulary for export.
    """
    key = ("tokens", id(data), int(vocab_size), int(max_len), int(word_ngrams), int(char_ngrams))

    def make() -> DataBundle:
        texts = split_texts(data)
        tok = Tokenizer.fit(texts["train"], int(vocab_size), int(max_len), int(word_ngrams), int(char_ngrams))
        splits = {}
        for name in ("train", "val", "test"):
            tokens, lengths = tok.encode(texts[name])
            splits[name] = Split({"tokens": tokens, "lengths": lengths}, data.split(name).targets)
        info = data.info.replace(extra={**data.info.extra, "vocab_size": len(tok.vocab), "max_len": int(max_len)})
        return DataBundle(splits["train"], splits["val"], splits["test"], info,
                          state={**data.state, "tokenizer": tok.to_state()}, summary=dict(data.summary))

    return _cached(key, data, make)


def prepare(data: DataBundle, config: dict[str, Any]) -> DataBundle:
    """``SearchSpace.prepare`` of every text space: tokenise with the config's settings."""
    m = config["model"]
    return tokenize_bundle(data, m["vocab_size"], m["max_len"], m.get("word_ngrams", 1), m.get("char_ngrams", 0))
