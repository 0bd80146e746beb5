"""Published results: the files every number of README.md comes from, and the README blocks they make.

``results/published/<name>.json`` is written by ``retdm publish NAME`` from a finished pipeline
run: the workspace's ``results/metrics.parquet`` (after ``make run``) or a DVC experiment's
(``--exp``: after ``make scene`` or ``make compare``, which run ``dvc exp run --temp`` and leave the
workspace as it was; the experiment's ``dvc.lock`` names the file in the DVC cache). It holds,
per dataset, method and metric, the mean, the sample std and the per-seed values; the paired
verdicts (``retdm.verdict``); and the lineage: code revision, params, the sha256 of ``dvc.lock``
and of the metrics file, the machine, the command and its wall time.

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

from retdm.compare import HEADERS, TABLE_METRICS
from retdm.errors import DataError
from retdm.files import atomic_write
from retdm.verdict import verdict_sentence, verdicts

PUBLISHED = Path("results") / "published"
BLOCK = re.compile(r"(<!-- published:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /published:(?P=name) -->)", re.S)


def summarise(long: pd.DataFrame) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """Long-form metrics → ``{dataset: {method: {metric: {"mean", "std", "seeds": [per seed]}}}}``
    (std ``None`` for one seed), methods in their order of appearance."""
    out: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    part = long[long["metric"].isin(TABLE_METRICS)].sort_values("seed", kind="stable")
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


def run_files(root: str | os.PathLike, exp: str | None = None) -> tuple[bytes, str, str, str]:
    """(the metrics Parquet's bytes, params.yaml, dvc.lock, the commit of the code that ran) of the
    workspace or of experiment ``exp`` (its Parquet read from the DVC cache, by the md5 its dvc.lock records)."""
    root = Path(root)
    if exp is None:
        metrics = root / "results" / "metrics.parquet"
        lock = root / "dvc.lock"
        if not metrics.is_file() or not lock.is_file():
            raise DataError(f"{metrics}: not found (or no dvc.lock); run the pipeline first (`make run`)")
        return metrics.read_bytes(), (root / "params.yaml").read_text(), lock.read_text(), \
            _git(root, "rev-parse", "HEAD").strip()
    ref = experiment_ref(root, exp)
    lock = _git(root, "show", f"{ref}:dvc.lock")
    outs = (yaml.safe_load(lock) or {}).get("stages", {}).get("compare", {}).get("outs", [])
    md5 = next((o["md5"] for o in outs if o["path"] == "results/metrics.parquet"), None)
    cached = root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:] if md5 else None
    if cached is None or not cached.is_file():
        raise DataError(f"experiment {exp!r}: results/metrics.parquet (md5 {md5}) is not in the DVC cache of {root}; "
                        f"`dvc exp pull` it, or re-run the experiment")
    # The experiment's commit holds its params and dvc.lock; its parent is the code it ran.
    return cached.read_bytes(), _git(root, "show", f"{ref}:params.yaml"), lock, _git(root, "rev-parse", f"{ref}^").strip()


def publish(name: str, root: str | os.PathLike = ".", *, exp: str | None = None, command: str = "",
            seconds: float | None = None) -> Path:
    """Write ``results/published/<name>.json`` from a finished run (see the module docstring).

    Returns:
        The written file.
    """
    root = Path(root)
    metrics, params, lock, commit = run_files(root, exp)
    long = pd.read_parquet(io.BytesIO(metrics))
    gains = pd.concat([verdicts(long, d) for d in long["dataset"].unique()], ignore_index=True)
    record = {
        "name": name, "command": command, "wall_seconds": None if seconds is None else round(float(seconds)),
        "commit": commit, "experiment": exp, "machine": machine_info(),
        "params": yaml.safe_load(params),
        "dvc_lock_sha256": hashlib.sha256(lock.encode()).hexdigest(),
        "metrics_sha256": hashlib.sha256(metrics).hexdigest(),
        "results": summarise(long),
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


def render_results(record: dict[str, Any]) -> list[str]:
    """A run's results: per dataset a table of mean ± std over seeds, and the verdict sentence."""
    lines = []
    for dataset, methods in record["results"].items():
        metrics = [m for m in TABLE_METRICS if any(m in v for v in methods.values())]
        seeds = max(len(v[m]["seeds"]) for v in methods.values() for m in v)
        lines += [f"**{dataset}**, test split, threshold 0.5, mean ± std over {seeds} seed"
                  f"{'s' if seeds > 1 else ''} (↓ lower is better):", "",
                  "| method | " + " | ".join(HEADERS.get(m, m) for m in metrics) + " |",
                  "|---|" + "---:|" * len(metrics)]
        for method, values in methods.items():
            cells = [(f"{values[m]['mean']:.4f}" + (f" ± {values[m]['std']:.4f}" if values[m]["std"] is not None else ""))
                     if m in values else "–" for m in metrics]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        gains = pd.DataFrame([v for v in record["verdicts"] if v["dataset"] == dataset])
        if len(gains):
            gains["gains"] = gains["gains"].apply(tuple)
            lines += ["", verdict_sentence(gains, HEADERS)]
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
