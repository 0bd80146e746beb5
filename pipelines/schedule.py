"""Which stages the ``reproduce`` flow runs, in what order, and how many at once: the stage graph
of ``dvc.yaml``, the selection for datasets × methods, each stage's CPU threads, and an order
that hands free workers the long trainings first. How they are used: ``pipelines.flows``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pipelines.params import stage_thread_count
from retdm.errors import ConfigError


def stage_graph(root: Path) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Every stage of ``dvc.yaml`` → the stages it depends on (upstream first in dict order),
    and every stage → its command."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph  # edge u → v: stage u depends on stage v
        order = [s for s in reversed(list(nx.topological_sort(graph))) if hasattr(s, "cmd")]
        return {s.name: [v.name for v in graph.successors(s)] for s in order}, {s.name: " && ".join(s.cmd) if isinstance(s.cmd, list) else s.cmd for s in order}


def select(graph: dict[str, list[str]], params: dict[str, Any], datasets: list[str] | None,
           methods: list[str] | None) -> list[str]:
    """The stages to run for ``datasets`` × ``methods`` (default: all in params.yaml), with
    everything they depend on; ``compare`` and ``report`` only when the selection covers all of
    params.yaml."""
    for kind, chosen, known in (("dataset", datasets, params["datasets"]), ("method", methods, params["methods"])):
        unknown = sorted(set(chosen or []) - set(known))
        if unknown:
            raise ConfigError(f"unknown {kind}(s) {unknown}; params.yaml has: {', '.join(known)}")
    datasets, methods = datasets or list(params["datasets"]), methods or list(params["methods"])
    wanted = {f"evaluate@{d}-{m}-{s}" for d in datasets for m in methods for s in params["seeds"]}
    if set(datasets) == set(params["datasets"]) and set(methods) == set(params["methods"]):
        wanted |= {"compare", "report"}
    missing = sorted(wanted - set(graph))
    if missing:
        raise ConfigError(f"dvc.yaml has no stage(s) {missing}; stages are: {', '.join(graph)}")
    needed: set[str] = set()
    todo = list(wanted)
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo.extend(graph[name])
    return [name for name in graph if name in needed]


def stage_command(command: str) -> tuple[str, list[str]]:
    """A stage's ``python -m pipelines.<entry> ARGS`` → ``(entry, ARGS)``; any other command →
    ``("", its words)``."""
    words = command.split()
    if len(words) < 3 or words[1] != "-m" or not words[2].startswith("pipelines."):
        return "", words
    return words[2].removeprefix("pipelines."), words[3:]


def trains_network(command: str) -> bool:
    """Whether a stage trains a network (pretrain, embed, finetune, a sweep point): the long ones."""
    entry, args = stage_command(command)
    return (entry == "train" and args[2] != "fit") or (entry == "sweep" and len(args) == 4)


def threads_of_stage(params: dict[str, Any], command: str, cores: int) -> int:
    """The CPU threads a stage computes with: ``pipelines.params.stage_thread_count`` (0: all
    ``cores``), times ``distributed.nproc_per_node`` for a network trained under torchrun."""
    entry, args = stage_command(command)
    processes = (params.get("distributed") or {}).get("nproc_per_node", 1) \
        if entry == "train" and trains_network(command) else 1
    return (stage_thread_count(params, entry, args) or cores) * processes


def run_order(stages: list[str], graph: dict[str, list[str]], commands: dict[str, str]) -> list[str]:
    """``stages`` upstream first and, among those whose upstream stages come earlier, network
    trainings (the long stages) first, else in ``stages``' order. Run in this order as workers
    free up, the short stages fill the gaps at the end instead of a long one starting last."""
    import heapq

    waiting = {name: {d for d in graph[name] if d in stages} for name in stages}
    ready = [(not trains_network(commands[n]), i, n) for i, n in enumerate(stages) if not waiting[n]]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        name = heapq.heappop(ready)[2]
        order.append(name)
        for i, other in enumerate(stages):
            if name in waiting[other]:
                waiting[other].discard(name)
                if not waiting[other]:
                    heapq.heappush(ready, (not trains_network(commands[other]), i, other))
    return order


def parallel_stages(params: dict[str, Any], graph: dict[str, list[str]], commands: dict[str, str],
                    cores: int | None = None) -> int:
    """How many of the stages of ``graph`` may run at once without more threads than cores: the
    most N such that every stage, beside the N - 1 hungriest stages that can run at the same time
    as it (those neither upstream nor downstream of it), fits the cores. A stage that always runs
    alone, such as the one pretrain every method continues, may so use all the cores."""
    cores = cores or os.cpu_count() or 1
    threads = {name: threads_of_stage(params, commands[name], cores) for name in graph}
    upstream: dict[str, set[str]] = {}
    for name in graph:  # upstream first
        upstream[name] = set(graph[name]).union(*(upstream[d] for d in graph[name]))
    beside = {name: sorted((threads[o] for o in graph if o != name and name not in upstream[o]
                            and o not in upstream[name]), reverse=True) for name in graph}
    fits = 1
    while fits < cores and all(threads[s] + sum(beside[s][:fits]) <= cores for s in graph):
        fits += 1
    return fits
