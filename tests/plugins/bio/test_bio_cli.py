"""bio through the CLI: a search on a generated FASTA, and one-line errors for bad files."""

from __future__ import annotations

from automl_plugins.bio._data import promoter_records


def test_fasta_search(cli, tmp_path):
    path = tmp_path / "seqs.fa"
    path.write_text("".join(f">{rid}|{label}\n{seq}\n" for rid, label, seq in promoter_records(n=120, length=60)))
    r = cli("search", "--plugin", "bio", "--dataset", "fasta", "--data", path, "--trials", "1",
            "--max-epochs", "2", "--study", "fa")
    assert r.code == 0, r.err
    assert "alphabet: dna" in r.out and "best auroc" in r.out


def test_bad_files_are_one_line_exit_2(cli, tmp_path):
    (tmp_path / "residue.fa").write_text(">a|x\nACGT\n>b|y\nACGJT\n")
    (tmp_path / "empty.fa").write_text("")
    (tmp_path / "cols.csv").write_text("sequence,label\nACGT,1\nACGT\n")
    cases = [
        ("fasta", "residue.fa", ["--option", "alphabet=dna"], "record 'b' has invalid character 'J' for the dna"),
        ("fasta", "empty.fa", [], "the file is empty"),
        ("csv", "cols.csv", [], "line 3 has 1 columns; the header has 2"),
        ("fasta", "residue.fa", ["--option", "alphabet=rna2"], "option 'alphabet' must be one of auto, dna"),
    ]
    for dataset, name, extra, message in cases:
        r = cli("search", "--plugin", "bio", "--dataset", dataset, "--data", tmp_path / name, *extra, "--trials", "1")
        assert r.code == 2, r.err
        assert message in r.err and len(r.err.strip().splitlines()) == 1, r.err
