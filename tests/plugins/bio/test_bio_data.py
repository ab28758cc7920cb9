"""bio loading: FASTA / CSV parsing, labels, alphabets, errors, and the built-in promoters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from automl import UserError
from automl_plugins.bio import _data


def write_fasta(path, records, width=7):
    with open(path, "w") as fh:
        for header, seq in records:
            fh.write(f">{header}\n" + "\n".join(seq[i:i + width] for i in range(0, len(seq), width)) + "\n")
    return path


def labelled(n=20):
    """Alternating classes: label 'pos' sequences hold TATAAA."""
    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        seq = "".join(rng.choice(list("ACGT"), size=int(rng.integers(20, 30))))
        out.append((f"s{k}|{'pos' if k % 2 else 'neg'} some description", seq + ("TATAAA" if k % 2 else "")))
    return out


def test_fasta_with_header_labels_multiline(tmp_path):
    bundle = _data.load_fasta(write_fasta(tmp_path / "a.fa", labelled()), {"alphabet": None, "labels": None}, 0)
    assert bundle.info.class_names == ["neg", "pos"] and bundle.info.extra["alphabet"] == "dna"
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 20
    tokens = torch.cat([bundle.train.inputs, bundle.val.inputs, bundle.test.inputs])
    assert tokens.shape[1] == max(len(s) for _, s in labelled()) and tokens.max() <= 4


def test_fasta_with_labels_csv(tmp_path):
    records = [(h.split("|")[0], s) for h, s in labelled()]
    fa = write_fasta(tmp_path / "a.fa", records)
    (tmp_path / "labels.csv").write_text("id,label\n" + "\n".join(f"s{k},{k % 3 == 0}" for k in range(20)))
    bundle = _data.load_fasta(fa, {"alphabet": None, "labels": str(tmp_path / "labels.csv")}, 0)
    assert bundle.info.class_names == ["False", "True"]
    (tmp_path / "few.csv").write_text("s0,a\ns1,b\n")
    with pytest.raises(UserError, match="record 's2' has no label"):
        _data.load_fasta(fa, {"alphabet": None, "labels": str(tmp_path / "few.csv")}, 0)


def test_csv_dataset_and_column_errors(tmp_path):
    rows = "\n".join(f"r{k},{s},{k % 2}" for k, (_, s) in enumerate(labelled()))
    (tmp_path / "s.csv").write_text("id,sequence,label\n" + rows + "\n")
    opts = {"alphabet": None, "sequence_column": "sequence", "label_column": "label"}
    assert _data.load_csv(tmp_path / "s.csv", opts, 0).info.num_classes == 2
    (tmp_path / "bad.csv").write_text("id,sequence,label\nr1,ACGT,1\nr2,ACGT\n")
    with pytest.raises(UserError, match="line 3 has 2 columns; the header has 3"):
        _data.load_csv(tmp_path / "bad.csv", opts, 0)
    with pytest.raises(UserError, match="no column 'seq'; columns: id, sequence, label"):
        _data.load_csv(tmp_path / "s.csv", {**opts, "sequence_column": "seq"}, 0)


@pytest.mark.parametrize("content, alphabet, message", [
    (">a|x\nACGT\n>b|y\nACGJT\n", None, "record 'b' has invalid character 'J' for the protein alphabet"),
    (">a|x\nACGT\n>b|y\nACGU\n", "dna", "record 'b' has invalid character 'U' for the dna alphabet"),
    (">a|x\nAC-GT\n", "dna", "record 'a' has invalid character '-'"),
    ("", None, "the file is empty"),
    ("\n\n", None, "the file is empty"),
    ("ACGT\n", None, "sequence data before the first '>' header"),
    (">a|x\n>b|y\nACGT\n", None, "record 'a' has an empty sequence"),
    (">a\nACGT\n", None, "record 'a' has no label"),
])
def test_bad_files_are_user_errors(tmp_path, content, alphabet, message):
    path = tmp_path / "bad.fa"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        _data.load_fasta(path, {"alphabet": alphabet, "labels": None}, 0)


def test_alphabet_detection_and_encoding():
    assert _data.detect_alphabet(["ACGTN", "ACG"]) == "dna"
    assert _data.detect_alphabet(["ACGUN"]) == "rna"
    assert _data.detect_alphabet(["MKWVTF", "ACG"]) == "protein"
    tokens, lengths = _data.encode(["a", "b"], ["ACGTN", "TA"], "dna", "x")
    assert tokens.tolist() == [[1, 2, 3, 4, 5], [4, 1, 0, 0, 0]] and lengths.tolist() == [5, 2]


def test_promoters_are_deterministic_imbalanced_and_motif_bearing():
    a, b = _data.promoter_records(n=400), _data.promoter_records(n=400)
    assert a == b
    positives = [s for _, label, s in a if label == "promoter"]
    assert 0.18 < len(positives) / len(a) < 0.32
    has_tata = lambda s: "TATA" in s
    negatives = [s for _, label, s in a if label != "promoter"]
    assert np.mean([has_tata(s) for s in positives]) > 1.5 * np.mean([has_tata(s) for s in negatives])
    bundle = _data.load_promoters(None, {}, 0)
    assert bundle.info.class_names == ["background", "promoter"] and bundle.info.extra["vocab"] == 6
    assert bundle.info.extra["length_choices"][-1] == 100
