"""automl.data: the table reader every plugin shares (CSV, TSV, JSON lines) and the row splitter."""

import numpy as np
import pytest

from automl import UserError
from automl.data import read_table


def test_csv_delimiters_are_sniffed_and_blank_lines_skipped(tmp_path):
    (tmp_path / "semi.csv").write_text("a;b\n1;x\n\n2;y\n", encoding="utf-8")
    assert read_table(tmp_path / "semi.csv") == {"a": ["1", "2"], "b": ["x", "y"]}
    (tmp_path / "t.tsv").write_text("a\tb\n1\tx, y; z\n", encoding="utf-8")
    assert read_table(tmp_path / "t.tsv") == {"a": ["1"], "b": ["x, y; z"]}


def test_free_text_is_read_with_a_comma_when_sniffing_is_off(tmp_path):
    # A semicolon-heavy sentence would make the sniffer split on ';'.
    (tmp_path / "r.csv").write_text('text,label\n"good; fine; ok; yes",1\n"bad; no; meh; never",0\n',
                                    encoding="utf-8")
    assert read_table(tmp_path / "r.csv", sniff=False) == {
        "text": ["good; fine; ok; yes", "bad; no; meh; never"], "label": ["1", "0"]}


def test_json_lines_keep_types_and_fill_missing_keys(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"a": 1, "b": "x"}\n\n{"a": 2.5, "c": null}\n', encoding="utf-8")
    assert read_table(tmp_path / "d.jsonl") == {"a": [1, 2.5], "b": ["x", None], "c": [None, None]}


@pytest.mark.parametrize("name, content, message", [
    ("empty.csv", "  \n", "the file is empty"),
    ("head.csv", "a,b\n", "a header but no rows"),
    ("dup.csv", "a,a\n1,2\n", "names column 'a' twice"),
    ("blank.csv", "a,\n1,2\n", "empty column name"),
    ("ragged.csv", "a,b,c\n1,2,3\n1,2\n", "line 3 has 2 fields, the header has 3"),
    ("bad.jsonl", '{"a": 1}\n{"a": \n', "line 2 is not valid JSON"),
    ("list.jsonl", "[1, 2]\n", "line 1 is not a JSON object"),
])
def test_bad_files_are_one_line_errors_naming_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=message) as err:
        read_table(path)
    assert name in str(err.value) and "\n" not in str(err.value)


def test_unreadable_files(tmp_path):
    (tmp_path / "latin.csv").write_bytes(b"a,b\n\xe9,1\n")
    with pytest.raises(UserError, match="not a UTF-8 text file"):
        read_table(tmp_path / "latin.csv")
    with pytest.raises(UserError, match="cannot be read"):
        read_table(tmp_path / "missing.csv")


@pytest.mark.parametrize("n, val, test", [(10, 0.2, 0.2), (1797, 0.2, 0.2), (101, 0.1, 0.1), (9, 0.2, 0.3)])
def test_three_way_split_partitions_rows_with_exact_sizes(n, val, test):
    import math

    from automl.data import three_way_split

    train, val_idx, test_idx = three_way_split(n, 5, val=val, test=test)
    assert (len(val_idx), len(test_idx)) == (math.ceil(val * n), math.ceil(test * n))
    together = np.concatenate([train, val_idx, test_idx])
    assert sorted(together.tolist()) == list(range(n))  # disjoint and complete
    assert all(np.all(np.diff(part) > 0) for part in (train, val_idx, test_idx))  # sorted


def test_three_way_split_is_seeded_and_stratified():
    from automl.data import three_way_split

    y = np.array([0] * 500 + [1] * 300 + [2] * 70 + [3] * 1)
    a, b = three_way_split(len(y), 1, stratify=y), three_way_split(len(y), 1, stratify=y)
    assert all(np.array_equal(x, z) for x, z in zip(a, b))
    assert not np.array_equal(a[2], three_way_split(len(y), 2, stratify=y)[2])
    for part, frac in zip(a, (0.6, 0.2, 0.2)):
        counts = np.bincount(y[part], minlength=4)
        assert np.all(np.abs(counts[:3] - frac * np.array([500, 300, 70])) <= 1.0 + 1e-9), counts


def test_three_way_split_refuses_too_few_rows():
    from automl.data import three_way_split

    with pytest.raises(UserError, match="too few"):
        three_way_split(2, 0)


def test_quoted_newlines_stay_inside_their_cell(tmp_path):
    """A CSV cell in quotes may hold line breaks (a review written over two lines)."""
    path = tmp_path / "reviews.csv"
    path.write_bytes(b'text,label\n"great film,\nloved it",1\n"bad\r\nfilm",0\nplain,1\n')
    table = read_table(path)
    assert table == {"text": ["great film,\nloved it", "bad\r\nfilm", "plain"], "label": ["1", "0", "1"]}
    path.write_bytes(b'text,label\n"unclosed,1\n')  # the quote runs to the end of the file: one field
    with pytest.raises(UserError, match="line 2 has 1 fields"):
        read_table(path)
