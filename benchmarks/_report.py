"""The markdown table of a benchmark run: one line per figure, each a ratio to a baseline
measured in the same run, with its goal, whether it is met, and the load average."""

from __future__ import annotations

from typing import Any

Row = tuple[str, str, str, str, str, str]  # section, figure, value, baseline, goal, met


def _yes(met: Any) -> str:
    return "-" if met is None else ("yes" if met else "**no**")


def _engine(r: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    for row in r["rows"] + [r["objective"]]:
        label = f"per-trial time, {row['storage']}, {row['trials']} trials" + \
            (" (full Objective)" if "objective" in row else " (trivial objective)")
        growth = row.get("growth")
        grew = (f"; trial {row['growth_trials'][0]}->{row['growth_trials'][1]} growth raw x{growth['raw']}, "
                f"automl x{growth['automl']}") if growth else ""
        out.append(("engine", label, f"{row['ratio']}x", f"raw optuna {row['raw_ms_per_trial']} ms vs automl "
                    f"{row['automl_ms_per_trial']} ms per trial; median-trial ratio {row['median_trial_ratio']}"
                    f"{grew} (load {row['load_avg_1m']})", row["goal"], _yes(row["met"])))
    g = r["growth"]
    if "total" in g:
        t = g["total"]
        out.append(("engine", f"per-trial time, memory, {g['trials']} trials, lock-step (trivial objective)",
                    f"{t['ratio']}x", f"raw optuna {t['raw_ms_per_trial']} ms vs automl {t['automl_ms_per_trial']} ms "
                    f"per trial (load {g['load_avg_1m']})", t["goal"], _yes(t["met"])))
    out.append(("engine", f"per-trial time at trial {g['at'][1]} (growth from {g['at'][0]}), memory", f"{g['ratio']}x",
                f"raw x{g['raw_growth']} ({g['raw_ms'][0]}->{g['raw_ms'][1]} ms), automl x{g['automl_growth']} "
                f"({g['automl_ms'][0]}->{g['automl_ms'][1]} ms), automl adds {g['added_ms'][0]}->{g['added_ms'][1]} ms "
                f"(load {g['load_avg_1m']})", "<= 1.10", _yes(g["met"])))
    return out


def _trainer(r: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    for row in r["rows"]:
        sps = row["samples_per_s"]
        base = (f"automl {sps['automl']:.0f}, minimal {sps['minimal']:.0f}, DataLoader {sps['dataloader']:.0f} "
                f"samples/s (load {row['load_avg_1m']})")
        out.append(("trainer", f"{row['case']}: vs minimal loop", f"{row['vs_minimal']}x", base, ">= 0.95",
                    _yes(row["vs_minimal"] >= 0.95)))
        out.append(("trainer", f"{row['case']}: vs DataLoader loop", f"{row['vs_dataloader']}x", "", "> 1.0",
                    _yes(row["vs_dataloader"] > 1.0)))
    return out


def _accuracy(r: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    for row in r["rows"]:
        if "skipped" in row:
            out.append(("accuracy", f"{row['tool']}", "skipped", row["skipped"], "", "-"))
            continue
        times = ", ".join(f"{k[2:]} at {row[k]} s" if row[k] is not None else f"{k[2:]} never" for k in row
                          if k.startswith("t_0."))
        out.append(("accuracy", f"{row['tool']}: final test accuracy",
                    "-" if row["final_test_acc"] is None else f"{row['final_test_acc']:.4f}",
                    f"{row['trials']} trials in {row['wall_s']} s; {times} (load {row['load_avg_1m']})",
                    "highest, > 0.99" if row["tool"] == "automl" else "",
                    _yes(r["met"]) if row["tool"] == "automl" else "-"))
    return out


def _scaling(r: dict[str, Any]) -> list[Row]:
    rows = [("scaling", f"--workers 2 vs 1, 1 thread each ({r['trials']} cnn trials, {r['max_epochs']} epochs)",
             f"{r['speedup']}x", f"{r['workers_1_s']} s vs {r['workers_2_s']} s on {r['cores']} cores "
             f"(load {r['load_avg_1m']})", ">= 1.7", _yes(r["speedup"] >= 1.7))]
    d = r.get("default_threads")
    if d:
        rows.append(("scaling", "--workers 2 vs 1, default threads (cores // workers)", f"{d['speedup']}x",
                     f"{d['workers_1_s']} s vs {d['workers_2_s']} s", "", "-"))
    return rows


def _pruning(r: dict[str, Any]) -> list[Row]:
    runs = r["runs"]
    per_seed = "; ".join(f"seed {x['seed']}: to {x['target_val_acc']} none {x['none']['epochs_to_target']} / "
                         f"asha {x['asha']['epochs_to_target']} epochs ({x['asha']['pruned']} pruned)" for x in runs)
    best = r["best_val_acc"]
    n = len(runs)
    return [("pruning", f"epochs to the same best, none / asha ({n} seeds)", f"{r['epochs_saving']}x",
             f"{per_seed} (load {r['load_avg_1m']})", "> 1", _yes(r["epochs_saving"] > 1)),
            ("pruning", "trial-seconds to the same best, none / asha", f"{r['trial_s_saving']}x", "", "> 1",
             _yes(r["trial_s_saving"] > 1)),
            ("pruning", f"epochs for the whole {r['trials']}-trial budget, none / "
                        f"asha", f"{r['budget_epochs_saving']}x",
             f"trial-seconds {r['budget_trial_s_saving']}x; best val acc none {best['none']}, asha {best['asha']}",
             "", "-")]


def _storage(r: dict[str, Any]) -> list[Row]:
    rows = {row["storage"]: row for row in r["rows"]}
    base = rows.get("sqlite")
    out: list[Row] = []
    for kind, row in rows.items():
        if "skipped" in row:  # PostgreSQL without its server tools or driver
            out.append(("storage", f"{kind}: {row['workers']} workers", "skipped", row["skipped"], "", "-"))
            continue
        value = f"{round(row['trials_per_s'] / base['trials_per_s'], 3)}x" if base and base["trials_per_s"] else "-"
        server = f" ({row['server']})" if row.get("server") else ""
        load = f" (load {row['load_avg_1m'][0]} -> {row['load_avg_1m'][1]})" if row.get("load_avg_1m") else ""
        goal = kind in ("sqlite-wal", "postgresql")  # the stores automl uses: one machine, several
        out.append(("storage", f"{kind}: {row['workers']} workers, trials/s vs plain sqlite", value,
                    f"{row['trials_per_s']} trials/s, {row['complete']}/{row['trials_asked']} landed, "
                    f"{row['errors']} errors{server}{load}", "0 errors" if goal else "",
                    _yes(row["errors"] == 0) if goal else "-"))
    return out


def _ray(r: dict[str, Any]) -> list[Row]:
    return [("ray", f"automl ray backend vs raw Tune ({r['trials']} trials, {r['workers']} workers)", f"{r['ratio']}x",
             f"raw {r['raw_s_per_trial']} s/trial vs automl {r['automl_s_per_trial']} s/trial", "< 1.15",
             _yes(r["ratio"] < 1.15))]


def _cli(r: dict[str, Any]) -> list[Row]:
    return [("cli", f"`{row['command'].replace('_', ' ')}`: median of {r['repeats']}", f"{row['median_s']} s",
             f"{row['vs_python']}x bare python ({r['python_s']} s), {row['vs_import_torch']}x `import torch` "
             f"({r['import_torch_s']} s) (load {r['load_avg_1m']})", f"<= {row['goal_s']} s", _yes(row["met"]))
            for row in r["rows"]]


def _chaos(r: dict[str, Any]) -> list[Row]:
    checks = r["checks"]
    base = f"{r['kills']} kills (by kind {r['kills_by_kind']}), {r['wall_s']} s (load {r['load_avg_1m']})"
    return [
        ("chaos", "finished trials / final target", f"{r['finished_trials']} / {r['final_target']}", base,
         "equal, none RUNNING", _yes(checks["finished == target"] and checks["no RUNNING trial left"])),
        ("chaos", "finished trials lost or changed", str(r["lost_or_changed_finished"]),
         f"{r['finished_checked']} finished trials seen after the kills", "0",
         _yes(checks["no finished trial lost or changed"])),
        ("chaos", "longest retry chain", str(r["longest_retry_chain"]),
         f"--max-retries {r['max_retries']}; {r['retries']} retries, {r['given_up_by_retry_cap']} given up",
         f"<= {1 + r['max_retries']}", _yes(not r["chains_over_cap"])),
        ("chaos", "duplicated retries / dropped dead trials",
         f"{r['duplicated_retries']} / {r['dropped_dead_trials']}", "every dead trial re-queued once or given up",
         "0 / 0", _yes(checks["no trial re-queued twice"]
                       and checks["no dead trial dropped (FAIL, neither re-queued nor given up)"])),
        ("chaos", "orphan processes / tracebacks / failed commands",
         f"{len(r['orphans'])} / {len(r['tracebacks'])} / {sum(not e['expected'] for e in r['failed_exits'])}",
         "stderr of every process scanned", "0 / 0 / 0",
         _yes(checks["processes outlived no killed parent"] and not r["tracebacks"]
              and checks["no command failed on its own"])),
    ]


def _spread(s: dict[str, Any] | None) -> str:
    return "-" if s is None else f"{s['mean']:.4f} ({s['min']:.4f}..{s['max']:.4f})"


def _quality(r: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    budget = f"{len(r['seeds'])} seeds, --timeout {r['timeout_s']} --workers {r['workers']} (load {r['load_avg_1m']})"
    for row in r["rows"]:
        where = f"{row['plugin']}/{row['dataset']}"
        failed = [x for x in row["runs"] if "error" in x]
        if "best" not in row:
            out.append(("quality", where, "failed", "; ".join(str(x["error"]) for x in failed), "", "**no**"))
            continue
        bases = ", ".join(f"{n} {_spread(s)}" for n, s in row["baselines"].items()) or "no baseline rows"
        out.append(("quality", f"{where}: test {row['metric']}, best single / ensemble",
                    f"{_spread(row['best'])} / {_spread(row['ensemble'])}", f"{bases}; {budget}",
                    "ensemble >= best single", _yes(row.get("ensemble_at_least_best"))))
        if "vs_strong" in row:
            out.append(("quality", f"{where}: vs {row['strong']}", "-", row["vs_strong"], "", "**no**"))
        else:
            goal = f"mean {'>=' if row['direction'] != 'minimize' else '<='} {row['strong']}"
            met = row["beats_strong_final"]
            if "goal_mean" in row:
                goal += f", >= {row['goal_mean']}, above it on every seed"
                met = met and row["meets_goal_mean"] and row["every_seed"]
            if "popular_ratio" in row:
                goal += f", >= {row['popular_goal']}x most-popular (now {row['popular_ratio']}x)"
                met = met and row["popular_ratio"] >= row["popular_goal"]
            before = f"; before refit {_spread(row['before_refit'])}" if row.get("before_refit") else ""
            out.append(("quality", f"{where}: what the search hands back vs {row['strong']}",
                        _spread(row["final"]), f"{row['strong']} {_spread(row['baselines'][row['strong']])}{before}",
                        goal, _yes(met)))
        if failed:
            out.append(("quality", f"{where}: failed runs", str(len(failed)), str(failed[0]["error"]), "0", "**no**"))
    return out


def _budget(r: dict[str, Any]) -> list[Row]:
    a, u, d = r["aware"], r["unaware"], r["digits"]
    if "error" in a or "error" in u:
        return [("budget", "mnist search", "failed", str(a.get("error") or u.get("error")), "", "**no**")]
    size = f"{r['n_train']}/{r['n_test']} MNIST-format images"
    rows: list[Row] = [
        ("budget", f"--timeout {r['budget_s']:g} --workers 2, {size}: wall clock of the command",
         f"{a['wall_s']} s ({round(a['wall_s'] / u['wall_s'], 3)}x unaware)",
         f"unaware {u['wall_s']} s (load {r['load_avg_1m']})",
         f"<= {r['budget_s'] * 1.1:g} s", _yes(r["aware_within"])),
        ("budget", "trials that trained an epoch (cut by the budget)", f"{a['trained_an_epoch']} ({a['cut']} cut)",
         f"unaware {u['trained_an_epoch']}", ">= 8", _yes(r["aware_trials_ok"])),
        ("budget", "best model's test accuracy", f"{a['best_test'] or 0:.4f}", f"unaware {u['best_test'] or 0:.4f}",
         ">= unaware", _yes(r.get("aware_at_least_unaware"))),
    ]
    if "error" in d:
        rows.append(("budget", "digits --timeout", "failed", str(d["error"]), "", "**no**"))
    else:
        rows.append(("budget", f"digits --timeout {r['digits_budget_s']:g}: wall clock, test accuracy",
                     f"{d['wall_s']} s, {d['best_test'] or 0:.4f}", f"{d['trained_an_epoch']} trials trained",
                     f"<= {r['digits_budget_s'] * 1.1:g} s, >= 0.97", _yes(r["digits_ok"])))
    return rows


FORMATTERS = {"cli": _cli, "engine": _engine, "trainer": _trainer, "accuracy": _accuracy, "scaling": _scaling,
              "pruning": _pruning, "storage": _storage, "ray": _ray, "chaos": _chaos, "quality": _quality,
              "budget": _budget}


def table(results: dict[str, Any]) -> str:
    """Markdown table of every section in ``results["sections"]``."""
    lines = ["| section | figure | value | baseline (same run) | goal | met |", "|---|---|---|---|---|---|"]
    for name, res in results["sections"].items():
        if "error" in res:
            lines.append(f"| {name} | failed | - | {res['error']} | | **no** |")
            continue
        if "skipped" in res:
            lines.append(f"| {name} | skipped | - | {res['skipped']} | | - |")
            continue
        for row in FORMATTERS[name](res):
            lines.append("| " + " | ".join(str(c).replace("|", "/") for c in row) + " |")
    return "\n".join(lines)
