"""Published results: the files every number of README.md comes from, and the README blocks they make.

``results/published/<name>.json`` is written by ``retdm publish NAME`` from a finished pipeline
run: the workspace's ``results/metrics.parquet`` and ``results/metrics_tuned.parquet`` (after
``make run``) or a DVC experiment's (``--exp``: after ``make scene`` or ``make compare``, which run
``dvc exp run --temp`` and leave the workspace as it was; the experiment's ``dvc.lock`` names the
files in the DVC cache). It holds, per dataset, method and metric, the mean, the sample std and
the per-seed values, at the fixed threshold (``results``) and at the thresholds tuned on the
validation part (``results_tuned``: the ``THRESHOLDED`` metrics); the paired verdicts
(``retdm.verdict``, at the fixed threshold); and the lineage: code revision, params, the sha256 of
``dvc.lock`` and of the metrics files, the machine, the command and its wall time.

README.md keeps each published table between ``<!-- published:NAME -->`` and
``<!-- /published:NAME -->``. ``retdm publish --readme`` rewrites every block from its file, and
``readme_drift`` (a test) names the blocks that differ, so a typed number cannot drift.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from retdm.compare import HEADERS, TABLE_METRICS, THRESHOLDED, TUNED_THRESHOLDS, against_paper
from retdm.errors import DataError
from retdm.files import atomic_write
from retdm.verdict import table_legend, verdict_table, verdicts

PUBLISHED = Path("results") / "published"
METRICS_FILES = ("metrics.parquet", "metrics_tuned.parquet")  # of results/: at the fixed and the tuned thresholds
BLOCK = re.compile(r"(<!-- published:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /published:(?P=name) -->)", re.S)


def summarise(long: pd.DataFrame, metrics: tuple[str, ...] = TABLE_METRICS) -> dict[str, dict[str, dict[str, Any]]]:
    """Long-form metrics → ``{dataset: {method: {metric: {"mean", "std", "seeds": [per seed]}}}}``
    (std ``None`` for one seed) for ``metrics``, methods in their order of appearance."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    part = long[long["metric"].isin(metrics)].sort_values("seed", kind="stable")
    for (dataset, method, metric), rows in part.groupby(["dataset", "method", "metric"], sort=False):
        values = [round(float(v), 6) for v in rows["value"]]
        std = float(rows["value"].std()) if len(values) > 1 else None
        out.setdefault(dataset, {}).setdefault(method, {})[metric] = {
            "mean": round(float(rows["value"].mean()), 6), "std": None if std is None else round(std, 6),
            "seeds": values}
    return out


def _git(root: Path, *args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, check=True, timeout=30).stdout.decode()
    except (OSError, subprocess.CalledProcessError) as err:
        raise DataError(f"git {' '.join(args)} failed in {root}: {getattr(err, 'stderr', b'').decode().strip() or err}"
                        ) from None


def experiment_ref(root: Path, name: str) -> str:
    """The git ref of DVC experiment ``name`` (``refs/exps/…/<name>``)."""
    refs = [r for r in _git(root, "for-each-ref", "--format=%(refname)", "refs/exps").split() if r.endswith(f"/{name}")]
    if not refs:
        raise DataError(f"no DVC experiment named {name!r} in {root}; run it first (`make scene`, `make compare`) "
                        f"or see `dvc exp list`")
    return refs[-1]


def run_files(root: str | os.PathLike, exp: str | None = None) -> tuple[dict[str, bytes], str, str, str]:
    """({name: bytes} of the ``METRICS_FILES``, params.yaml, dvc.lock, the commit of the code that
    ran) of the workspace or of experiment ``exp`` (its Parquet read from the DVC cache, by the md5
    its dvc.lock records)."""
    root = Path(root)
    if exp is None:
        lock = root / "dvc.lock"
        for name in METRICS_FILES:
            if not (root / "results" / name).is_file() or not lock.is_file():
                raise DataError(f"{root / 'results' / name}: not found (or no dvc.lock); run the pipeline first "
                                f"(`make run`)")
        return {n: (root / "results" / n).read_bytes() for n in METRICS_FILES}, (root / "params.yaml").read_text(), \
            lock.read_text(), _git(root, "rev-parse", "HEAD").strip()
    ref = experiment_ref(root, exp)
    lock = _git(root, "show", f"{ref}:dvc.lock")
    outs = (yaml.safe_load(lock) or {}).get("stages", {}).get("compare", {}).get("outs", [])
    files = {}
    for name in METRICS_FILES:
        md5 = next((o["md5"] for o in outs if o["path"] == f"results/{name}"), None)
        cached = root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:] if md5 else None
        if cached is None or not cached.is_file():
            raise DataError(f"experiment {exp!r}: results/{name} (md5 {md5}) is not in the DVC cache of {root}; "
                            f"`dvc exp pull` it, or re-run the experiment")
        files[name] = cached.read_bytes()
    # The experiment's commit holds its params and dvc.lock; its parent is the code it ran.
    return files, _git(root, "show", f"{ref}:params.yaml"), lock, _git(root, "rev-parse", f"{ref}^").strip()


def publish(name: str, root: str | os.PathLike = ".", *, exp: str | None = None, command: str = "",
            seconds: float | None = None) -> Path:
    """Write ``results/published/<name>.json`` from a finished run (see the module docstring).

    Returns:
        The written file.
    """
    root = Path(root)
    files, params, lock, commit = run_files(root, exp)
    long, tuned = (pd.read_parquet(io.BytesIO(files[name])) for name in METRICS_FILES)
    gains = pd.concat([verdicts(long, d) for d in long["dataset"].unique()], ignore_index=True)
    record = {
        "name": name, "command": command, "wall_seconds": None if seconds is None else round(float(seconds)),
        "commit": commit, "experiment": exp, "machine": machine_info(),
        "params": yaml.safe_load(params),
        "dvc_lock_sha256": hashlib.sha256(lock.encode()).hexdigest(),
        "metrics_sha256": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
        "results": summarise(long),
        "results_tuned": summarise(tuned, THRESHOLDED),
        "verdicts": json.loads(gains.to_json(orient="records")),
    }
    return write_record(record, root)


def machine_info() -> dict[str, Any]:
    """The machine a published figure came from."""
    return {"system": platform.system(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "torch": _version("torch")}


def write_record(record: dict[str, Any], root: str | os.PathLike = ".") -> Path:
    """``record`` as ``results/published/<record["name"]>.json``, atomically."""
    out = Path(root) / PUBLISHED / f"{record['name']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, indent=1, ensure_ascii=False) + "\n"
    atomic_write(out, lambda tmp: Path(tmp).write_text(text))
    return out


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def render_block(record: dict[str, Any]) -> str:
    """The Markdown a README block shows for one published file: per dataset a table of mean ± std
    over seeds and the verdict sentence (a run), or a table of checks (``checks``: a benchmark,
    fuzzing, mutation testing), then where the numbers came from."""
    lines = render_checks(record) if "checks" in record else render_results(record)
    wall = f", {record['wall_seconds'] / 60:.0f} min wall time" if record.get("wall_seconds") else ""
    machine = record["machine"]
    lines.append(f"<sub>From `results/published/{record['name']}.json`: `{record['command']}` at commit "
                 f"{record['commit'][:10]} on {machine['cpus']} CPU cores ({machine['machine']}, torch "
                 f"{machine['torch']}){wall}; regenerate with `retdm publish --readme`.</sub>")
    return "\n".join(lines) + "\n"


def render_checks(record: dict[str, Any]) -> list[str]:
    """``checks``: [{"what", "result", "target" (optional), "pass" (optional bool)}] as a table."""
    lines = ["| what | result | target | |", "|---|---|---|---|"]
    for c in record["checks"]:
        verdict = {True: "PASS", False: "FAIL"}.get(c.get("pass"), "")
        lines.append(f"| {c['what']} | {c['result']} | {c.get('target') or ''} | {verdict} |")
    return lines + [""]


def minutes(seconds: float) -> str:
    """``612.3`` → ``"10.2 min (612 s)"``."""
    return f"{seconds / 60:.1f} min ({seconds:.0f} s)"


def _table(methods: dict[str, dict[str, Any]], metrics: tuple[str, ...]) -> list[str]:
    """Markdown rows of ``{method: {metric: {"mean", "std"}}}``, one column per metric any method has."""
    metrics = [m for m in metrics if any(m in v for v in methods.values())]
    lines = ["| method | " + " | ".join(HEADERS.get(m, m) for m in metrics) + " |", "|---|" + "---:|" * len(metrics)]
    for method, values in methods.items():
        cells = [(f"{values[m]['mean']:.4f}" + (f" ± {values[m]['std']:.4f}" if values[m]["std"] is not None else ""))
                 if m in values else "–" for m in metrics]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def paper_sentence(versus: pd.DataFrame) -> str:
    """:func:`retdm.compare.against_paper` as one sentence: per method, on how many metrics it
    beats the paper's row, and which it does not."""
    parts = []
    for method, rows in versus.groupby("method", sort=False):
        behind = [HEADERS[m] for m in rows.loc[~rows["better"], "metric"]]
        parts.append(f"{method} better on {int(rows['better'].sum())} of {len(rows)}"
                     + (f" (not on {', '.join(behind)})" if behind else ""))
    return "Against the paper's row of the same method, metric by metric, at threshold 0.5: " + "; ".join(parts) + "."


def render_results(record: dict[str, Any]) -> list[str]:
    """A run's results: per dataset a table of mean ± std over seeds at threshold 0.5, the
    label-based metrics at the thresholds tuned on the validation part (when the record has
    them), and the verdict sentence."""
    lines = []
    for dataset, methods in record["results"].items():
        seeds = max(len(v[m]["seeds"]) for v in methods.values() for m in v)
        lines += [f"**{dataset}**, test split, threshold 0.5, mean ± std over {seeds} seed"
                  f"{'s' if seeds > 1 else ''} (↓ lower is better):", "", *_table(methods, TABLE_METRICS)]
        tuned = record.get("results_tuned", {}).get(dataset)
        if tuned:
            lines += ["", f"The same models at {TUNED_THRESHOLDS}; the ranking metrics do not depend on "
                      "thresholds:", "", *_table(tuned, THRESHOLDED)]
        versus = against_paper({m: {k: v["mean"] for k, v in values.items()} for m, values in methods.items()}, dataset)
        if len(versus):
            lines += ["", paper_sentence(versus)]
        gains = pd.DataFrame([v for v in record["verdicts"] if v["dataset"] == dataset])
        if len(gains):
            gains["gains"] = gains["gains"].apply(tuple)
            lines += ["", table_legend(gains), "", *verdict_table(gains, HEADERS)]
        lines.append("")
    return lines


def rewrite_readme(text: str, published: str | os.PathLike) -> str:
    """``text`` with every ``published:NAME`` block rendered from ``published/NAME.json``.

    Raises:
        DataError: a block names a file that does not exist.
    """
    def block(match: re.Match) -> str:
        path = Path(published) / f"{match['name']}.json"
        if not path.is_file():
            raise DataError(f"README block published:{match['name']}: {path} not found; run the command that "
                            f"publishes it (README says which), or remove the block")
        return match.group(1) + render_block(json.loads(path.read_text())) + match.group(4)

    return BLOCK.sub(block, text)


def readme_drift(readme: str | os.PathLike, published: str | os.PathLike) -> list[str]:
    """The names of the README blocks whose text differs from what their files render."""
    text = Path(readme).read_text()
    fresh = rewrite_readme(text, published)
    now = {m["name"]: m["body"] for m in BLOCK.finditer(text)}
    return [name for name, body in ((m["name"], m["body"]) for m in BLOCK.finditer(fresh)) if now.get(name) != body]
