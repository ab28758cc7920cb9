"""A study made with ``--plugin-path`` (a plugin file that is not installed: the guide's
complete predict example) exports and predicts; when the file moves, the error names it and
``--plugin-path`` gives the new place. Loading the export raises no deprecation warning."""

from __future__ import annotations

import csv
import re
import shutil
import warnings
from pathlib import Path

import numpy as np

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "writing-plugins.md"


def guide_example() -> str:
    """The complete plugin with ``predict_new`` in docs/writing-plugins.md (the code block after
    the ``example: devplug`` marker): a learnable two-feature classification (the class is the
    sign of x0 + x1) whose predict_new reads a CSV of x0,x1 rows."""
    match = re.search(r"<!-- example: devplug -->\s*```python\n(.*?)```", GUIDE.read_text(), flags=re.DOTALL)
    assert match, "the guide's devplug example is gone"
    return match.group(1)


def test_plugin_path_study_exports_and_predicts(cli, studies, tmp_path):
    plugin = tmp_path / "dev" / "devplug.py"
    plugin.parent.mkdir()
    plugin.write_text(guide_example())
    r = cli("search", "--plugin-path", plugin, "--plugin", "devplug", "--trials", "2", "--ensemble", "0",
            "--study", "dev")
    assert r.code == 0, r.err
    rows = cli("leaderboard", "dev", "--format", "json").json()
    assert all(set(row["metrics"]) == {"accuracy", "macro_f1"} for row in rows), rows
    new = tmp_path / "new.csv"
    new.write_text("x0,x1\n2,2\n-2,-2\n1.5,1\n")

    out = tmp_path / "export"
    r = cli("export", "dev", "--out", out)
    assert r.code == 0, r.err
    assert (out / "model.pt2").exists() and "automl predict" in (out / "README.md").read_text()
    for source in ("dev", out):
        r = cli("predict", source, "--data", new)
        assert r.code == 0, r.err
        assert [row["prediction"] for row in csv.DictReader(r.out.splitlines())] == ["pos", "neg", "pos"]

    # loading the export: no deprecation warning (torch.jit's would be a FutureWarning)
    from automl.output.artifact import load_portable

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        model = load_portable(out)
        import torch

        logits = model(torch.tensor([[2.0, 2.0], [-2.0, -2.0]]))
    assert np.argmax(logits.detach().numpy(), axis=1).tolist() == [1, 0]

    # the plugin file moves: a clear error naming it, then --plugin-path with the new place
    moved = tmp_path / "elsewhere" / "devplug.py"
    moved.parent.mkdir()
    shutil.move(plugin, moved)
    for command in (["predict", "dev", "--data", new], ["predict", out, "--data", new],
                    ["export", "dev", "--out", tmp_path / "again"], ["resume", "dev", "--trials", "1"]):
        r = cli(*command)
        assert r.code == 2 and str(plugin) in r.err and "--plugin-path" in r.err, (command, r.err)
    r = cli("predict", "dev", "--data", new, "--plugin-path", moved)
    assert r.code == 0, r.err
    r = cli("export", "dev", "--out", tmp_path / "again", "--plugin-path", moved)
    assert r.code == 0 and (tmp_path / "again" / "model.pt2").exists(), r.err
    assert Path(studies / "dev").is_dir()
