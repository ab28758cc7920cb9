"""Bio datasets: FASTA and CSV sequence files, alphabets, and the built-in promoter data.

Sequences are encoded as integer tokens, 1-based in the alphabet's order (0 is padding), and
held as one right-padded ``(N, L)`` int64 tensor. Cropping / padding to the length a trial
uses is done per trial by the spaces' ``prepare`` (see :mod:`._spaces`), so the length
is a searched hyperparameter.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch

from automl import DataBundle, DataInfo, Split, UserError
from automl.data import three_way_split

#: Alphabets, in token order (token = position + 1). N / X are the ambiguity codes.
ALPHABETS = {"dna": "ACGTN", "rna": "ACGUN", "protein": "ACDEFGHIKLMNPQRSTVWYXBZUO"}
#: Complement of each token of the nucleotide alphabets (pad -> pad), for reverse complement.
COMPLEMENT = {"dna": [0, 4, 3, 2, 1, 5], "rna": [0, 4, 3, 2, 1, 5]}


def detect_alphabet(seqs: list[str]) -> str:
    """``dna`` if every residue is in ACGTN, ``rna`` if in ACGUN, else ``protein``."""
    letters = set().union(*map(set, seqs)) if seqs else set()
    for name in ("dna", "rna"):
        if letters <= set(ALPHABETS[name]):
            return name
    return "protein"


def encode(ids: list[str], seqs: list[str], alphabet: str, source: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences -> right-padded int64 tokens ``(N, max_len)`` and lengths. An invalid residue
    is a :class:`UserError` naming the record."""
    table = np.zeros(256, dtype=np.int64)
    for pos, ch in enumerate(ALPHABETS[alphabet]):
        table[ord(ch)] = pos + 1
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    out = np.zeros((len(seqs), int(lengths.max())), dtype=np.int64)
    for row, (rid, seq) in enumerate(zip(ids, seqs)):
        raw = np.frombuffer(seq.encode("ascii", errors="replace"), dtype=np.uint8)
        tokens = table[raw]
        if (tokens == 0).any():
            bad = seq[int(np.argmax(tokens == 0))]
            raise UserError(f"{source}: record {rid!r} has invalid character {bad!r} for the {alphabet} "
                            f"alphabet ({ALPHABETS[alphabet]})")
        out[row, : len(tokens)] = tokens
    return torch.from_numpy(out), torch.from_numpy(lengths)


def _clean(seq: str, alphabet_hint: str | None) -> str:
    seq = "".join(seq.split()).upper()
    return seq[:-1] if seq.endswith("*") else seq  # a trailing stop codon in protein FASTA


def read_fasta(path: str | Path) -> list[tuple[str, str | None, str]]:
    """``(id, label or None, sequence)`` per record. The header is ``>id|label`` or ``>id``
    (anything after the first whitespace is a description); sequences may span lines."""
    p = _file(path)
    records: list[tuple[str, str | None, str]] = []
    header, chunks = None, []
    with p.open(encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith(";"):
                continue
            if line.startswith(">"):
                if header is not None:
                    records.append(_record(p, header, chunks))
                header, chunks = line[1:].strip(), []
            elif header is None:
                raise UserError(f"{p}: line {n}: sequence data before the first '>' header; not a FASTA file")
            else:
                chunks.append(line)
    if header is not None:
        records.append(_record(p, header, chunks))
    if not records:
        raise UserError(f"{p}: the file is empty (no FASTA records)")
    return records


def _record(p: Path, header: str, chunks: list[str]) -> tuple[str, str | None, str]:
    name = header.split()[0] if header.split() else ""
    rid, sep, label = name.partition("|")
    if not rid:
        raise UserError(f"{p}: a record has an empty header")
    seq = _clean("".join(chunks), None)
    if not seq:
        raise UserError(f"{p}: record {rid!r} has an empty sequence")
    return rid, (label.strip() or None) if sep else None, seq


def _file(path: Any) -> Path:
    p = Path(path)
    if not p.exists():
        raise UserError(f"file not found: {p}")
    if not p.is_file():
        raise UserError(f"not a file: {p}")
    return p


def read_labels(path: str | Path) -> dict[str, str]:
    """An ``id,label`` CSV (a header row is allowed) -> ``{id: label}``."""
    p = _file(path)
    with p.open(newline="", encoding="utf-8", errors="replace") as fh:
        rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    if not rows:
        raise UserError(f"{p}: the labels file is empty")
    out: dict[str, str] = {}
    for n, row in enumerate(rows, 1):
        if len(row) != 2:
            raise UserError(f"{p}: row {n} has {len(row)} columns; expected 2 (id, label)")
        out[row[0].strip()] = row[1].strip()
    return out


def read_csv(path: str | Path, seq_col: str, label_col: str) -> list[tuple[str, str | None, str]]:
    """``(id, label, sequence)`` per row of a CSV with a header; ids are an ``id`` column
    when there is one, else ``row N``. Every row must have the header's column count."""
    p = _file(path)
    with p.open(newline="", encoding="utf-8", errors="replace") as fh:
        rows = [(n, r) for n, r in enumerate(csv.reader(fh), 1) if r and any(c.strip() for c in r)]
    if not rows:
        raise UserError(f"{p}: the file is empty")
    header = [c.strip() for c in rows[0][1]]
    for col in (seq_col, label_col):
        if col not in header:
            raise UserError(f"{p}: no column {col!r}; columns: {', '.join(header)} "
                            "(choose with --option sequence_column=... / label_column=...)")
    si, li = header.index(seq_col), header.index(label_col)
    ii = header.index("id") if "id" in header else None
    records = []
    for n, row in rows[1:]:
        if len(row) != len(header):
            raise UserError(f"{p}: line {n} has {len(row)} columns; the header has {len(header)}")
        rid = row[ii].strip() if ii is not None else f"row {n}"
        seq = _clean(row[si], None)
        if not seq:
            raise UserError(f"{p}: record {rid!r} has an empty sequence")
        records.append((rid, row[li].strip() or None, seq))
    if not records:
        raise UserError(f"{p}: no rows after the header")
    return records


def bundle_from_records(records: list[tuple[str, str | None, str]], alphabet: str, seed: int,
                        source: str) -> DataBundle:
    """Labelled records -> a stratified 60/20/20 classification bundle of token tensors."""
    missing = [rid for rid, label, _ in records if label is None]
    if missing:
        raise UserError(f"{source}: record {missing[0]!r} has no label ({len(missing)} unlabelled); "
                        "use '>id|label' headers or --option labels=PATH")
    ids = [r[0] for r in records]
    seqs = [r[2] for r in records]
    if alphabet == "auto":
        alphabet = detect_alphabet(seqs)
    tokens, lengths = encode(ids, seqs, alphabet, source)
    class_names = sorted({r[1] for r in records})
    if len(class_names) < 2:
        raise UserError(f"{source}: every record has label {class_names[0]!r}; need at least 2 classes")
    index = {c: i for i, c in enumerate(class_names)}
    labels = np.array([index[r[1]] for r in records], dtype=np.int64)
    if len(labels) < 10:
        raise UserError(f"{source}: {len(labels)} records are too few to split (need 10)")
    tr, va, te = three_way_split(len(labels), seed, stratify=labels)
    y = torch.from_numpy(labels)
    train_len = lengths[torch.from_numpy(tr)].double()
    quantiles = sorted({int(train_len.quantile(q).ceil()) for q in (0.5, 0.9, 1.0)})
    info = DataInfo(task="classification", num_classes=len(class_names), input_shape=(tokens.shape[1],),
                    class_names=class_names,
                    extra={"alphabet": alphabet, "vocab": len(ALPHABETS[alphabet]) + 1,
                           "length_choices": quantiles, "max_length": int(tokens.shape[1])})
    counts = np.bincount(labels, minlength=len(class_names))
    summary = {"records": len(records), "alphabet": alphabet,
               "lengths": f"{int(lengths.min())}..{int(lengths.max())} (median {int(lengths.median())})",
               "classes": ", ".join(f"{c}: {n}" for c, n in zip(class_names, counts))}

    def take(idx: np.ndarray) -> Split:
        t = torch.from_numpy(idx)
        return Split(tokens[t], y[t])

    return DataBundle(take(tr), take(va), take(te), info,
                      state={"alphabet": alphabet, "class_names": class_names}, summary=summary)


def _alphabet(options: dict[str, Any]) -> str:
    return options.get("alphabet") or "auto"  # auto: detected by bundle_from_records


def load_fasta(path: Any, options: dict[str, Any], seed: int) -> DataBundle:
    """``--data PATH`` FASTA; labels from ``>id|label`` headers or ``--option labels=CSV``."""
    records = read_fasta(path)
    if options.get("labels"):
        mapping = read_labels(options["labels"])
        records = [(rid, mapping.get(rid, label), seq) for rid, label, seq in records]
    return bundle_from_records(records, _alphabet(options), seed, str(path))


def load_csv(path: Any, options: dict[str, Any], seed: int) -> DataBundle:
    """``--data PATH`` CSV with a header, sequence and label columns (and optionally ``id``)."""
    records = read_csv(path, options["sequence_column"], options["label_column"])
    return bundle_from_records(records, _alphabet(options), seed, str(path))


TATA_PWM = "TATAAAAG"  # TATA-box consensus TATAWAWR, its most common instance
INR_PWM = "TCAGTCT"  # initiator consensus YYANWYY


def promoter_records(n: int = 2000, length: int = 100, positive: float = 0.25,
                     seed: int = 20240607) -> list[tuple[str, str, str]]:
    """Deterministic promoter-like DNA with a planted TATA-box-like motif.

    - Background: each sequence has its own GC content drawn from Beta(9, 11) (mean 0.45,
      the genome-wide range), bases drawn independently with it.
    - Lengths vary uniformly in ``[length - 20, length]``: the models must pad or crop.
    - 25% of sequences are positive (class imbalance). A positive carries the TATA box
      ``TATAAAAG`` at a uniformly random position and, 25 to 30 bases downstream of it (as in
      real core promoters), the initiator ``TCAGTCT``. Each planted base is kept with
      probability 0.85, else replaced by a random base: position weight matrices, not exact
      strings, so chance partial matches in AT-rich backgrounds make single motifs ambiguous.
    - Label noise: 3% of labels are flipped, so a perfect score is not reachable.
    """
    if length - 20 < 30 + len(INR_PWM):
        raise ValueError(f"length must be at least {50 + len(INR_PWM)} to hold both motifs")
    rng = np.random.default_rng(seed)
    bases = np.array(list("ACGT"))
    records = []
    for k in range(n):
        gc = rng.beta(9, 11)
        size = int(rng.integers(length - 20, length + 1))
        probs = [(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2]
        seq = rng.choice(bases, size=size, p=probs)
        label = int(rng.random() < positive)
        if label:
            gap = int(rng.integers(25, 31))
            at = int(rng.integers(0, size - gap - len(INR_PWM) + 1))
            for start, consensus in ((at, TATA_PWM), (at + gap, INR_PWM)):
                motif = np.array(list(consensus))
                mutate = rng.random(len(motif)) > 0.85
                motif[mutate] = rng.choice(bases, size=int(mutate.sum()))
                seq[start:start + len(motif)] = motif
        if rng.random() < 0.03:
            label = 1 - label
        records.append((f"seq{k}", "promoter" if label else "background", "".join(seq)))
    return records


def load_promoters(path: Any, options: dict[str, Any], seed: int) -> DataBundle:
    """The built-in data (no download): see :func:`promoter_records`."""
    return bundle_from_records(promoter_records(), "dna", seed, "promoters")
