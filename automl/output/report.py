"""``automl report NAME``: one self-contained HTML file about a study.

It holds the spec and provenance, the leaderboard (with baselines), the optimization history
(best so far over trials and over wall time), parameter importances, parallel coordinates,
learning curves (pruned trials visible) and the best trial's details with its confusion
matrix. Figures are matplotlib PNGs embedded as data URIs (see :mod:`._report_plots`); the
file references nothing outside itself, so it opens offline. A small inline script checks
that every figure decoded and no script error happened, and writes the result into the
element ``#report-status`` (which the headless-browser test reads).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
from pathlib import Path
from typing import Any

from automl.errors import UserError

SECTIONS = (("pareto", "Pareto front"), ("history", "Optimization history"), ("importances", "Parameter importances"),
            ("parallel", "Parallel coordinates"), ("curves", "Learning curves"))
MAX_ROWS = 200

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;
color:#222;padding:0 16px}h1{font-size:1.6em;margin-bottom:4px}h2{border-bottom:1px solid #ddd;padding-bottom:4px;
margin-top:32px}table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px solid #ddd;
padding:3px 8px;text-align:left;vertical-align:top}th{background:#f4f4f4}td.num{text-align:right;
font-variant-numeric:tabular-nums}tr.COMPLETE td.state{color:#1a7f37}tr.PRUNED td.state{color:#b35900}
tr.FAIL td.state{color:#c62828}tr.base td{color:#7b1fa2}img.plot{max-width:100%;display:block;margin:8px 0}
.muted{color:#777}.cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:6px;
padding:8px 14px}.card b{display:block;font-size:1.3em}code,pre{background:#f6f8fa;border-radius:4px}
pre{padding:8px;overflow:auto;font-size:12px}#report-status{margin-top:32px;font-size:12px;color:#777}
"""

SCRIPT = """
var reportErrors=[];window.onerror=function(m){reportErrors.push(String(m));};
window.addEventListener('load',function(){var imgs=document.querySelectorAll('img.plot'),drawn=0;
for(var i=0;i<imgs.length;i++){if(imgs[i].complete&&imgs[i].naturalWidth>0){drawn++;}}
var s=document.getElementById('report-status');s.setAttribute('data-plots',imgs.length);
s.setAttribute('data-drawn',drawn);s.setAttribute('data-errors',reportErrors.length);
s.textContent=(drawn===imgs.length&&reportErrors.length===0)?'report-ok: all '+drawn+' plots drawn'
:'report-broken: '+(imgs.length-drawn)+' plot(s) not drawn; errors: '+reportErrors.join('; ');});
"""


def _e(value: Any) -> str:
    return html.escape("-" if value is None else str(value))


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) >= 1e4 or (value != 0 and abs(value) < 1e-3) else f"{value:.4f}"
    return _e(value)


def _table(headers: list[str], rows: list[list[Any]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{_e(classes[i])}"' if classes else ""
        cells = "".join(f'<td class="num">{_num(c)}</td>' if isinstance(c, (int, float)) and not isinstance(c, bool)
                        else f"<td>{c if isinstance(c, Markup) else _e(c)}</td>" for c in row)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class Markup(str):
    """HTML that is inserted as is (already escaped)."""


def _img(png: bytes, alt: str) -> str:
    return f'<img class="plot" alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _when(ts: Any) -> str:
    try:
        return dt.datetime.fromtimestamp(float(ts)).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OSError):
        return "-"


def _state_cell(row: dict[str, Any]) -> Any:
    return Markup(f'<span class="state">{_e(row["state"])}</span>')


def build_report(name: str) -> str:
    """The report of study ``name`` as an HTML string."""
    from optuna.trial import TrialState

    from automl.output.plots import plot_all
    from automl.study.results import baselines, leaderboard, summary
    from automl.study.store import BEST_KEY, open_ref, spec_of

    ref = open_ref(name)
    study = ref.load()
    spec = spec_of(study)
    info = summary(ref, study)
    best = study.user_attrs.get(BEST_KEY)
    rows = leaderboard(study)
    metric = spec.get("metric", "value")
    pngs, notes, imp = plot_all(study, metric, best["number"] if best else None, best)
    trials = study.get_trials(deepcopy=False)
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    wall = (max(ends) - min(starts)).total_seconds() if starts and ends else None
    counts = {s.name: sum(t.state == s for t in trials) for s in TrialState}
    arrow = "higher is better" if spec.get("direction") == "maximize" else "lower is better"

    parts = [f"<h1>Study {_e(name)}</h1>",
             f'<p class="muted">plugin <b>{_e(spec.get("plugin"))}</b>, dataset <b>{_e(spec.get("dataset"))}</b>, '
             f'space(s) {_e(", ".join(spec.get("spaces") or []))}, metric <b>{_e(metric)}</b> ({arrow}); '
             f'report written {_e(dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S"))}</p>']
    if spec.get("objectives") or spec.get("constraints"):
        goals = [f"objectives <b>{_e(', '.join(spec['objectives']))}</b> (the first is the primary)"
                 if spec.get("objectives") else "", f"constraints <b>{_e(', '.join(spec['constraints']))}</b>"
                 if spec.get("constraints") else ""]
        parts.append(f"<p class='muted'>{'; '.join(g for g in goals if g)}; deployment figures measured on "
                     f"{_e(spec.get('latency_device', 'cpu'))} with {_e(spec.get('latency_threads', 1))} thread(s) "
                     "(see docs/deployment.md)</p>")
    cards = [("best validation " + metric, info.get("best_value")),
             ("test " + metric + " of the best", best.get("test_value") if best else None),
             ("finished / target", f"{info['finished']} / {info.get('target')}"),
             ("complete · pruned · failed", f"{counts['COMPLETE']} · {counts['PRUNED']} · {counts['FAIL']}"),
             ("wall time (s)", round(wall, 1) if wall is not None else None)]
    parts.append('<div class="cards">' + "".join(
        f'<div class="card">{_e(k)}<b>{_num(v)}</b></div>' for k, v in cards) + "</div>")

    prov = [["created", _when(spec.get("created"))], ["automl version", spec.get("automl_version")],
            ["plugin version", spec.get("plugin_version")], ["data path", spec.get("data_path")],
            ["data options", json.dumps(spec.get("options") or {})],
            ["data fingerprint", spec.get("data_fingerprint")], ["space hash", spec.get("space_hash")],
            ["sampler / pruner / seed", f"{spec.get('sampler')} / {spec.get('pruner')} / {spec.get('seed')}"],
            ["command", " ".join(spec.get("command") or [])], ["storage", ref.url]]
    summary_rows = [[k, v] for k, v in (info.get("data_summary") or {}).items()]
    parts += ["<h2>Spec and provenance</h2>", _table(["", ""], prov)]
    if summary_rows:
        parts += ["<h3>Data</h3>", _table(["", ""], summary_rows)]
    parts.append(f"<details><summary>full spec (JSON)</summary><pre>{_e(json.dumps(spec, indent=2))}</pre></details>")

    parts.append(f"<h2>Leaderboard</h2><p class='muted'>{len(rows)} trials"
                 f"{f', first {MAX_ROWS} shown' if len(rows) > MAX_ROWS else ''}; {metric}: {arrow}</p>")
    from automl.output.render import figure_names, metric_names, param_order

    others = [m for m in metric_names(rows, metric) if m != metric]  # every metric of the plugin, on validation
    order = param_order(rows)  # the model's parameters first
    figs = [f for f in figure_names(rows) if f not in ("size_bytes", "latency_device")]  # every figure measured
    marks = [m for m in ("front", "feasible") if any(r.get(m) is not None for r in rows)]
    mark_text = {"front": {True: "front", False: "", None: ""}, "feasible": {True: "yes", False: "NO", None: ""}}
    table_rows, classes = [], []
    for b_name, b in baselines(study).items():
        table_rows.append(["", "base", "BASELINE", *[""] * len(marks), b.get("val"), *[None] * len(others),
                           b.get("test"), None, None, *[None] * len(figs),
                           f"{b_name}: {b.get('error') or b.get('description', '')}"])
        classes.append("base")
    for r in rows[:MAX_ROWS]:
        detail = r["error"] if r["state"] == "FAIL" and r.get("error") else \
            ", ".join(f"{k}={_num(r['params'][k])}" for k in order if k in r["params"])
        if r.get("violations"):
            detail = "misses " + ", ".join(f"{k} by {_num(v)}" for k, v in r["violations"].items()) + "; " + detail
        deploy = r.get("deploy") or {}
        table_rows.append([r["rank"], r["number"], _state_cell(r), *[mark_text[m][r.get(m)] for m in marks],
                           r["value"], *[(r.get("metrics") or {}).get(m) for m in others], r["test_value"],
                           r["duration_s"], r["epochs"], *[deploy.get(f) for f in figs], detail])
        classes.append(r["state"])
    parts.append(_table(["rank", "trial", "state", *marks, f"val {metric}", *[f"val {m}" for m in others],
                         f"test {metric}", "time (s)", "epochs", *figs, "params / reason"], table_rows, classes))

    for key, title in SECTIONS:
        if key == "pareto" and len(study.directions) == 1:
            continue  # a single-objective study has no front
        parts.append(f"<h2>{_e(title)}</h2>")
        if key == "pareto":
            parts.append(f"<p class='muted'>every complete trial in the space of the objectives "
                         f"({_e(', '.join(spec.get('objectives') or []))}); the Pareto front (the trials no other "
                         "trial beats on every objective) highlighted; the leaderboard lists it first</p>")
        if key == "history":
            parts.append("<p class='muted'>each finished trial's value and the best so far, over trials (left) "
                         "and over wall time (right)</p>")
        if key == "curves":
            parts.append("<p class='muted'>validation metric after each epoch; pruned trials dashed, "
                         "ending in a cross; the best trial in green</p>")
        parts.append(_img(pngs[key], title) if key in pngs else f"<p class='muted'>{_e(notes.get(key))}</p>")
        if key == "importances" and imp:
            parts.append(_table(["parameter", "importance"], [[k, v] for k, v in imp.items()]))

    parts.append("<h2>Best trial</h2>")
    if best:
        parts.append(f"<p>trial <b>{best['number']}</b>: validation {_e(best.get('metric'))} "
                     f"<b>{_num(best.get('value'))}</b>, test <b>{_num(best.get('test_value'))}</b>; "
                     f"model saved in <code>{_e(ref.dir / 'best')}</code></p>")
        parts.append(_table(["parameter", "value"], [[k, v] for k, v in best.get("params", {}).items()]))
        parts.append(f"<details><summary>config (JSON)</summary><pre>{_e(json.dumps(best.get('config'), indent=2))}"
                     "</pre></details>")
        if "confusion" in pngs:
            parts += ["<h3>Confusion matrix (test split)</h3>", _img(pngs["confusion"], "confusion matrix")]
    else:
        parts.append("<p class='muted'>no trial completed</p>")
    parts.append('<div id="report-status">report-pending</div>')
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width'><title>automl report: {_e(name)}</title>"
            f"<style>{CSS}</style><script>{SCRIPT}</script></head><body>{''.join(parts)}</body></html>")


def write_report(name: str, out: str | None = None) -> Path:
    """Write the report of study ``name`` to ``out`` (default: ``studies/NAME/report.html``)."""
    from automl.study.store import open_ref

    target = Path(out) if out else open_ref(name).dir / "report.html"
    if target.is_dir():
        raise UserError(f"--out {out} is a folder; give a file name such as report.html")
    if not target.parent.is_dir():
        raise UserError(f"--out {out}: folder {target.parent} does not exist")
    text = build_report(name)
    target.write_text(text, encoding="utf-8")
    return target
