"""``params.yaml`` read once, at the edge: the paths each stage uses and each method's config.

The paths each stage uses are ``retdm.layout.Layout``, the layout of ``dvc.yaml``.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from retdm.config import TrainConfig, load_config, profiles, yaml_problem
from retdm.errors import ConfigError, RetdmError
from retdm.layout import COMPARISON_MD, METRICS_JSON, RESULTS, Layout  # noqa: F401  (stages import them from here)
from retdm.log import configure
from retdm.methods import FEATURE_STAGES, METHODS

PARAMS_FILE = Path("params.yaml")
# The params.yaml groups whose methods dvc.yaml trains with one kind of stage each.
METHOD_GROUPS = {"retdm_variants": ("pretrain", "embed", "finetune"), "deep_baselines": ("pretrain", "finetune"),
                 "probes": ("probe",), "feature_methods": FEATURE_STAGES}


def load_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """The parsed params file; a missing file, invalid YAML, or a missing or mistyped section says which."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found; run from the repository root")
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid YAML ({yaml_problem(err)}); fix the file") from None
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping of keys (profile, seeds, datasets, …), got {params!r:.60}")
    needed = ("profile", "seeds", "distributed", "datasets", "split", "validate", "train", "methods", *METHOD_GROUPS,
              "evaluate", "sweep")
    missing = [k for k in needed if k not in params]
    if missing:
        raise ConfigError(f"{path}: missing key(s) {missing}")
    check_shapes(params, path)
    check_profiles(params, path)
    check_distributed(params.get("distributed"), path)
    check_seeds(params["seeds"], path)
    check_method_groups(params, path)
    swept = (params["sweep"] or {}).get("datasets") or []  # a list of names: check_shapes
    unknown = [d for d in swept if d not in (params["datasets"] or {})]
    if unknown or (swept and "retdm" not in params["methods"]):
        raise ConfigError(f"{path}: sweep.datasets {swept} " + (f"names {unknown}, not in datasets" if unknown else
                          "needs retdm in methods") + "; list datasets of `datasets` (or none: sweep.datasets: [])")
    for name, spec in (params["datasets"] or {}).items():
        absent = [k for k in DATASET_KEYS if not isinstance(spec, dict) or k not in spec]
        if absent:
            raise ConfigError(f"{path}: datasets.{name} lacks {absent}; every dataset names its `source`, its "
                              f"`inputs` (the file or folder it is made from, e.g. the folder of your images and "
                              f"CSV; retdm/data/synthetic.py for a generated one), whether to keep its "
                              f"`official_split` (true/false) and its `train` overrides (`train: {{}}` for none); "
                              f"dvc.yaml lists them as params, and `inputs` as a dependency of download")
    return params


# Keys every dataset must have: dvc.yaml's templates read them (a missing one breaks every stage).
DATASET_KEYS = ("source", "inputs", "official_split", "train")


# Each section's type: a mapping or a list (None where an empty one may be left blank).
SECTIONS = {"distributed": dict, "datasets": dict | None, "split": dict, "validate": dict, "train": dict | None,
            "methods": dict, **{group: list | None for group in METHOD_GROUPS}, "evaluate": dict, "sweep": dict | None}


def check_shapes(params: dict[str, Any], path: Path) -> None:
    """The sections ``train_config`` and the stages walk have the type they are read as: ``SECTIONS``,
    each method's and each dataset's ``train`` overrides a mapping, the method groups and
    ``sweep.datasets`` lists of names."""
    def check(key: str, value: Any, kind: Any, what: str) -> None:
        if not isinstance(value, kind):
            raise ConfigError(f"{path}: {key} must be {what}, got {value!r:.60}")

    for key, kind in SECTIONS.items():
        check(key, params[key], kind, "a mapping" if kind in (dict, dict | None) else "a list")
    for name, own in params["methods"].items():
        check(f"methods.{name}", own, dict | None, "a mapping of config overrides ({} for none)")
    for name, spec in (params["datasets"] or {}).items():
        if isinstance(spec, dict):
            check(f"datasets.{name}.train", spec.get("train"), dict | None,
                  "a mapping of config overrides ({} for none)")
    sweep = params["sweep"] or {}
    check("sweep.train", sweep.get("train"), dict | None, "a mapping of config overrides")
    for key, names in [(g, params[g]) for g in METHOD_GROUPS] + [("sweep.datasets", sweep.get("datasets"))]:
        check(key, names, list | None, "a list of names")
        if not all(isinstance(n, str) for n in names or []):
            raise ConfigError(f"{path}: {key} must list names (strings), got {names!r:.60}")


def check_profiles(params: dict[str, Any], path: Path) -> None:
    """``profile`` and every ``datasets.<name>.train.profile`` name a profile of retdm/profiles.yaml."""
    named = [("profile", params["profile"])] + [
        (f"datasets.{name}.train.profile", spec["train"]["profile"]) for name, spec in (params["datasets"] or {}).items()
        if isinstance(spec, dict) and isinstance(spec.get("train"), dict) and "profile" in spec["train"]]
    known = profiles()
    for key, profile in named:
        if not isinstance(profile, str) or profile not in known:
            raise ConfigError(f"{path}: {key} is {profile!r}; valid profiles are: {', '.join(sorted(known))}")


DISTRIBUTED_KEYS = {"nproc_per_node": int, "nnodes": int, "rdzv_endpoint": str}


def check_distributed(spec: Any, path: Path) -> None:
    """``distributed`` has exactly ``nproc_per_node`` ≥ 1, ``nnodes`` ≥ 1 and ``rdzv_endpoint`` (host:port)."""
    if not isinstance(spec, dict) or set(spec) != set(DISTRIBUTED_KEYS):  # sorted() fails on mixed-type YAML keys
        raise ConfigError(f"{path}: distributed must have exactly the keys {sorted(DISTRIBUTED_KEYS)}, got {spec!r}; "
                          f"e.g. {{nproc_per_node: 1, nnodes: 1, rdzv_endpoint: localhost:29500}}")
    for key, kind in DISTRIBUTED_KEYS.items():
        value = spec[key]
        if type(value) is not kind or (kind is int and value < 1) or (kind is str and ":" not in value):
            raise ConfigError(f"{path}: distributed.{key} is {value!r}; expected "
                              + ("an integer >= 1" if kind is int else "host:port of the rendezvous (node 0)"))


def check_seeds(seeds: Any, path: Path) -> None:
    """``seeds`` is a non-empty list of distinct integers ≥ 0 (a DVC ``matrix`` axis of every stage
    that trains or evaluates)."""
    if (not isinstance(seeds, list) or not seeds or any(type(s) is not int or s < 0 for s in seeds)
            or len(set(seeds)) != len(seeds)):  # set() only once every seed is an int (a list is unhashable)
        raise ConfigError(f"{path}: seeds is {seeds!r}; expected a list of distinct integers >= 0, "
                          f"e.g. [0] (one run) or [0, 1, 2] (mean ± std over three)")


def seed_arg(seed: str | int) -> int:
    """A stage's SEED argument (from the ``dvc.yaml`` matrix) as an integer."""
    try:
        return int(seed)
    except ValueError:
        raise ConfigError(f"seed {seed!r}: expected an integer, one of params.yaml `seeds`") from None


def torchrun_command(params: dict[str, Any], args: list[str], run_id: str) -> list[str] | None:
    """The ``torchrun`` command line that runs ``python <args>`` on ``distributed``'s processes:
    ``--standalone`` on one node, c10d rendezvous at ``rdzv_endpoint`` on several (start the same
    command on every node: ``infra/torchrun.sh``). None when it is a single process."""
    spec = params["distributed"]
    if spec["nproc_per_node"] * spec["nnodes"] == 1:
        return None
    where = (["--standalone"] if spec["nnodes"] == 1 else
             [f"--nnodes={spec['nnodes']}", "--rdzv_backend=c10d", f"--rdzv_endpoint={spec['rdzv_endpoint']}",
              f"--rdzv_id={run_id}"])
    return [sys.executable, "-m", "torch.distributed.run", *where, f"--nproc_per_node={spec['nproc_per_node']}",
            *args]


def check_method_groups(params: dict[str, Any], path: Path) -> None:
    """Every method of ``methods`` is in the group of its kind (the stages that train it in
    ``dvc.yaml``), and every group member is a listed method."""
    unknown = [name for name in params["methods"] if name not in METHODS]
    if unknown:
        raise ConfigError(f"{path}: methods {unknown} are not registered; valid methods are: "
                          f"{', '.join(METHODS.names())} (`retdm methods` lists them)")
    for group, stages in METHOD_GROUPS.items():
        listed = params[group] or []
        want = [m for m in params["methods"] if METHODS.get(m).stages == stages]
        if sorted(listed) != sorted(want):
            raise ConfigError(f"{path}: {group} is {listed}, but the methods trained by its stages "
                              f"({' → '.join(stages)}) are {want}; list exactly those")


def dataset_spec(params: dict[str, Any], name: str) -> dict[str, Any]:
    """``datasets.<name>``; an unknown name lists the configured ones."""
    if name not in params["datasets"]:
        raise ConfigError(f"unknown dataset {name!r}; params.yaml datasets are: {', '.join(params['datasets'])}")
    return params["datasets"][name]


def dotted(tree: dict[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    """``{"loss": {"alpha": 1}}`` → ``{"loss.alpha": 1}``."""
    out: dict[str, Any] = {}
    for key, value in (tree or {}).items():
        if isinstance(value, dict):  # an empty section overrides nothing
            out.update(dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def train_config(params: dict[str, Any], method: str, dataset: str | None = None, seed: int | None = None
                 ) -> TrainConfig:
    """The profile ← ``train`` ← ``datasets.<dataset>.train`` ← ``methods.<method>`` ← ``seed``
    (default: the first of ``seeds``).

    ``datasets.<dataset>.train`` may name its own ``profile`` (e.g. ``lite`` for real photographs
    beside the ``cpu`` default of ``synthetic``), which then replaces the top-level one.
    A RETDM variant continues the shared pretrain stage, so its own overrides may not touch the
    sections that stage depends on (they would silently differ from the model it starts from).
    """
    if method not in params["methods"]:
        raise ConfigError(f"unknown method {method!r}; params.yaml methods are: {', '.join(params['methods'])}")
    own = dotted(params["methods"][method])
    shared = [k for k in own if k.split(".")[0] in ("seed", "data", "model", "optim", "pretrain")]
    if shared and method != "bce":
        raise ConfigError(f"params.yaml methods.{method}: {shared} belong to the shared pretrain stage; "
                          f"set them under `train` for every method")
    per_dataset = dotted(dataset_spec(params, dataset).get("train")) if dataset is not None else {}
    profile = per_dataset.pop("profile", params["profile"])
    return load_config(profile, {**dotted(params["train"]), **per_dataset, **own,
                                  "seed": params["seeds"][0] if seed is None else seed})



def sweep_config(params: dict[str, Any], dataset: str, seed: int | None = None) -> TrainConfig:
    """RETDM's config for ``dataset`` with ``sweep.train`` on top (before each sweep point's α and β)."""
    base = train_config(params, "retdm", dataset, seed)
    return load_config(base.profile, {**dotted(base.to_dict()), **dotted((params.get("sweep") or {}).get("train"))})


def stage_thread_count(params: dict[str, Any], entry: str, args: list[str]) -> int:
    """The CPU threads the stage ``python -m pipelines.<entry> ARGS`` computes with (0: the
    libraries' defaults, all cores). The one place this is resolved: the stage applies it
    (``stage_main``) and the flow's scheduler fits stages to the cores by it
    (``pipelines.schedule``). A network or fit (``train DATASET METHOD STAGE SEED``) and a sweep
    point (``sweep DATASET SEED ALPHA BETA``) take their config's ``threads`` (the method's or
    dataset's own, else ``train.threads``); every other stage takes ``train.threads``. The last
    bits of a result depend on it, so the stages whose numbers do list ``train`` as a param."""
    if entry == "train" and len(args) == 4:
        dataset, method, _, seed = args
        return train_config(params, method, dataset, seed_arg(seed)).threads
    if entry == "sweep" and len(args) == 4:
        return sweep_config(params, args[0], seed_arg(args[1])).threads
    return int(dotted(params.get("train")).get("threads") or 0)


@contextlib.contextmanager
def stage_threads(threads: int) -> Iterator[None]:
    """Cap the threads of torch and of the OpenMP/BLAS pools at ``threads`` (0: the libraries'
    defaults) for the whole stage, inference included: two stages running at once with more
    threads than cores between them each run several times slower."""
    if not threads:
        yield
        return
    from threadpoolctl import threadpool_limits

    if "torch" in sys.modules:  # a stage without torch does not pay for importing it
        sys.modules["torch"].set_num_threads(threads)
    with threadpool_limits(threads):
        yield


def stage_main(run: Callable[..., Any], argv: list[str] | None = None) -> None:
    """Run a stage function with the command-line arguments; a ``RetdmError`` becomes one line
    on stderr and exit status 1 (DVC and Prefect then stop everything downstream). Its threads are
    capped at ``stage_thread_count`` of params.yaml (none without the file)."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print((run.__doc__ or run.__name__).strip())
        return
    try:
        inspect.signature(run).bind(*args)
    except TypeError as err:
        print(f"usage error: {err}\n{(run.__doc__ or '').strip()}", file=sys.stderr)
        raise SystemExit(2) from None
    start = time.time()
    configure()  # the library's messages (one line per epoch) into the stage's log
    try:
        entry = Path(inspect.getfile(run)).stem  # pipelines/<entry>.py, also when run as __main__
        threads = stage_thread_count(load_params(), entry, args) if PARAMS_FILE.is_file() else 0
        with stage_threads(threads):
            run(*args)
    except RetdmError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    log = os.environ.get("RETDM_STAGE_TIMES")
    if log:  # bench/bench_orchestration.py: time spent inside the retdm call, per stage
        with open(log, "a") as f:
            f.write(json.dumps({"entry": Path(sys.argv[0]).stem, "args": args, "start": start,
                                "end": time.time()}) + "\n")
