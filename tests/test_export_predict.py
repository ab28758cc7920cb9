"""``automl export`` and ``automl predict``: the exported model predicts like the best model
in memory, through the plugin's own loader and fitted preprocessing."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _results_helper import image_folder, iris_test_csv, make_study


def _best_model(name: str):
    """The best model rebuilt by hand from the study folder (state_dict + config.json)."""
    import os

    from automl.output.artifact import data_info as _info
    from automl.plugins import load_registry
    from automl.training import build_model

    best = Path(os.environ["AUTOML_STUDIES"]) / name / "best"
    record = json.loads((best / "config.json").read_text())
    space = load_registry().plugins[record["spec"]["plugin"]].spaces[record["config"]["space"]]
    model = build_model(space, record["config"]["model"], _info(record["info"]))
    model.load_state_dict(torch.load(best / "model.pt", map_location="cpu", weights_only=True))
    return model.eval(), record


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _probs(rows, names):
    return np.array([[float(r[f"p_{n}"]) for n in names] for r in rows])


def test_tabular_round_trip_and_standalone_program(studies, cli, tmp_path):


    make_study("tab", "tabular", trials=2, dataset="iris")
    out = tmp_path / "export"
    r = cli("export", "tab", "--out", out)
    assert r.code == 0, r.err
    for f in ("model.safetensors", "model.pt2", "config.json", "preprocessing.json",
              "reproducibility.json", "README.md"):
        assert (out / f).exists(), f
    assert not (out / "model.torchscript.pt").exists(), "TorchScript (deprecated by torch) only with --torchscript"
    assert "torch.export.load('model.pt2')" in (out / "README.md").read_text()
    record = json.loads((out / "reproducibility.json").read_text())
    assert record["seeds"]["study_seed"] == 0 and isinstance(record["seeds"]["trial_seed"], int)
    assert record["data"]["fingerprint"] == record["data"]["fingerprint_at_export"]
    assert record["versions"]["automl_at_export"] and record["versions"]["plugin_at_search"]
    assert "automl search --plugin tabular --dataset iris" in record["equivalent_command"]
    assert "means" in json.loads((out / "preprocessing.json").read_text())["preprocessing"]

    # new rows: the raw iris rows of the test split, written as a CSV without the target
    data = tmp_path / "new.csv"
    test_idx = iris_test_csv(data)
    r = cli("predict", out, "--data", data, "--out", tmp_path / "pred.csv")
    assert r.code == 0, r.err
    rows = _read_csv(tmp_path / "pred.csv")
    assert [r["id"] for r in rows] == [f"row{i}" for i in test_idx]

    # the best model in memory on the study's own (preprocessed) test split
    model, info = _best_model("tab")
    from automl.output.artifact import load_artifact, prepared_data

    art = load_artifact("tab")
    test = prepared_data(art.spec, art.dataset, art.space, art.config).test
    with torch.no_grad():
        want = torch.softmax(model(**test.inputs), dim=-1).numpy()
    names = info["class_names"]
    assert np.allclose(_probs(rows, names), want, atol=1e-5)
    assert [r["prediction"] for r in rows] == [names[i] for i in want.argmax(1)]
    r = cli("predict", "tab", "--data", data)  # from the study itself, CSV on stdout
    assert r.code == 0 and r.out.splitlines()[1].startswith(f"row{test_idx[0]},")

    # The torch.export program runs without automl: plain torch in an isolated interpreter,
    # where a deprecation warning on loading it is an error
    args = [test.inputs["num"], test.inputs["cat"]]
    torch.save({"args": args, "want": torch.from_numpy(want)}, tmp_path / "io.pt")
    code = ("import sys; sys.modules['automl'] = None; sys.modules['automl_plugins'] = None\n"
            "import torch, warnings; warnings.simplefilter('error', FutureWarning)\n"
            "warnings.simplefilter('error', DeprecationWarning)\n"
            "m = torch.export.load('export/model.pt2').module()\n"
            "io = torch.load('io.pt', weights_only=True)\n"
            "got = torch.softmax(m(*io['args']), dim=-1)\n"
            "assert torch.allclose(got, io['want'], atol=1e-5), (got, io['want'])\n"
            "print('standalone ok', tuple(got.shape))\n")
    proc = subprocess.run([sys.executable, "-I", "-W", "error::FutureWarning", "-c", code], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "standalone ok" in proc.stdout

    # TorchScript on request; predict runs from either portable file when the weights are gone
    r = cli("export", "tab", "--out", tmp_path / "ts", "--torchscript")
    assert r.code == 0 and (tmp_path / "ts" / "model.torchscript.pt").exists(), r.err
    for folder, keep in ((out, "model.pt2"), (tmp_path / "ts", "model.torchscript.pt")):
        (folder / "model.safetensors").unlink()
        if keep == "model.torchscript.pt":
            (folder / "model.pt2").unlink()
        r = cli("predict", folder, "--data", data)
        assert r.code == 0, (keep, r.err)
        got = list(csv.DictReader(r.out.splitlines()))
        assert np.allclose(_probs(got, names), want, atol=1e-5), keep

    # bad input: missing feature columns; unknown file
    bad = tmp_path / "bad.csv"
    bad.write_text("id,sepal length (cm)\na,1\n")
    r = cli("predict", out, "--data", bad)
    assert r.code == 2 and "missing feature column" in r.err
    assert cli("predict", out, "--data", tmp_path / "nope.csv").code == 2

    # ONNX (the onnx extra): checked, and run by onnx's reference evaluator
    onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'automl[onnx]')")
    from onnx.reference import ReferenceEvaluator

    r = cli("export", "tab", "--out", tmp_path / "with-onnx", "--onnx")
    assert r.code == 0, r.err
    graph = onnx.load(str(tmp_path / "with-onnx" / "model.onnx"))
    onnx.checker.check_model(graph)
    feeds = {"num": test.inputs["num"].numpy(), "cat": test.inputs["cat"].numpy()}
    logits = ReferenceEvaluator(graph).run(None, {i.name: feeds[i.name] for i in graph.graph.input})[0]
    assert np.allclose(torch.softmax(torch.from_numpy(logits), -1).numpy(), want, atol=1e-4)


def test_text_round_trip_and_kept_weights(studies, cli, tmp_path):
    make_study("txt", "text", trials=2, spaces=["cnn"], options=["size=240"])
    out = tmp_path / "export"
    assert cli("export", "txt", "--out", out, "--single").code == 0  # the best trial, not the ensemble
    model, info = _best_model("txt")
    from automl.output.artifact import load_artifact, prepared_data, raw_data
    from automl_plugins.text._tokens import decode_texts

    art = load_artifact("txt")
    texts = decode_texts(raw_data(art.spec, art.dataset).test)
    test = prepared_data(art.spec, art.dataset, art.space, art.config).test
    with torch.no_grad():
        want = torch.softmax(model(**test.inputs), dim=-1).numpy()
    data = tmp_path / "new.csv"
    with open(data, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["body"])
        w.writerows([[t] for t in texts] + [[""]])
    r = cli("predict", out, "--data", data, "--option", "text_column=body", "--out", tmp_path / "p.csv")
    assert r.code == 0, r.err
    assert "skipped rows (empty text): 1" in r.err
    rows = _read_csv(tmp_path / "p.csv")
    assert len(rows) == len(texts)
    assert np.allclose(_probs(rows, info["class_names"]), want, atol=1e-5)
    r = cli("predict", out, "--data", data)  # the study's text column 'text' is not in this file
    assert r.code == 2 and "no column 'text'" in r.err

    # a trial whose weights were not kept: a clear error
    other = 1 - info["number"]
    weights = Path(studies) / "txt" / "trials" / str(other) / "model.pt"
    if weights.exists():
        assert cli("export", "txt", "--trial", other, "--out", tmp_path / "other").code == 0
        weights.unlink()
    r = cli("export", "txt", "--trial", other, "--out", tmp_path / "other2")
    assert r.code == 2 and "was not kept" in r.err
    assert cli("export", "txt", "--trial", 99, "--out", tmp_path / "x").code == 2


def test_vision_round_trip_on_a_fresh_folder(studies, cli, tmp_path):
    from automl_plugins.vision._folder import decode

    data = image_folder(tmp_path / "train")
    make_study("vis", "vision", trials=2, dataset="imagefolder", data_path=str(data), spaces=["mlp"],
               options=["size=8"])
    out = tmp_path / "export"
    assert cli("export", "vis", "--out", out).code == 0
    fresh = image_folder(tmp_path / "fresh", per_class=3, size=14, bad=2)  # other size: resized like training
    (fresh / "notes.txt").write_text("not an image, ignored")
    r = cli("predict", out, "--data", fresh, "--out", tmp_path / "p.csv")
    assert r.code == 0, r.err
    assert "skipped files (unreadable): 2" in r.err
    rows = _read_csv(tmp_path / "p.csv")
    assert len(rows) == 9 and any("/sub/" in r["id"] for r in rows)
    model, info = _best_model("vis")
    x = torch.stack([torch.from_numpy(decode(fresh / r["id"], 8)[0]) for r in rows])
    with torch.no_grad():
        want = torch.softmax(model(x), dim=-1).numpy()
    names = info["class_names"]
    assert np.allclose(_probs(rows, names), want, atol=1e-5)
    assert [r["prediction"] for r in rows] == [names[i] for i in want.argmax(1)]
    r = cli("predict", "vis", "--data", fresh / "red" / "red1.png")  # one file, from the study
    assert r.code == 0 and r.out.splitlines()[1].startswith("red1.png,")


def test_recsys_and_bio_predict(studies, cli, tmp_path):
    make_study("rec", "recsys", trials=1, max_epochs=1)
    (tmp_path / "users.txt").write_text("user\nu0\nu1\nnobody\n")
    r = cli("predict", "rec", "--data", tmp_path / "users.txt", "--option", "k=3")
    assert r.code == 0, r.err
    rows = list(csv.DictReader(r.out.splitlines()))
    assert [(x["id"], x["rank"]) for x in rows] == [("u0", "1"), ("u0", "2"), ("u0", "3"),
                                                   ("u1", "1"), ("u1", "2"), ("u1", "3")]
    assert float(rows[0]["score"]) >= float(rows[1]["score"]) and "skipped users (unknown): 1" in r.err
    (tmp_path / "pairs.csv").write_text("u0,i1\nu1,i10\n")
    r = cli("predict", "rec", "--data", tmp_path / "pairs.csv")
    assert r.code == 0 and r.out.splitlines()[0] == "id,score" and len(r.out.splitlines()) == 3

    make_study("bio", "bio", trials=1, max_epochs=1)
    out = tmp_path / "bio-export"
    assert cli("export", "bio", "--out", out).code == 0
    (tmp_path / "new.fa").write_text(">s1 a record\nACGTACGTTATAAAAGG\nCCA\n>s2|1\nGGGGCCCCAAAATTTT\n")
    r = cli("predict", out, "--data", tmp_path / "new.fa")
    assert r.code == 0, r.err
    rows = list(csv.DictReader(r.out.splitlines()))
    assert [x["id"] for x in rows] == ["s1", "s2"]
    assert abs(float(rows[0]["p_background"]) + float(rows[0]["p_promoter"]) - 1) < 1e-4
    (tmp_path / "bad.fa").write_text(">bad\nACGJ\n")
    r = cli("predict", out, "--data", tmp_path / "bad.fa")
    assert r.code == 2 and "invalid character 'J'" in r.err
