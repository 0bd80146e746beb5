"""Data-parallel training under torchrun (gloo, CPU): W processes train as one process with the
same global batch and seed would, evaluation counts every item once, only rank 0 writes."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retdm.data.table import read_label_table
from retdm.checkpoint import load_checkpoint
from retdm.errors import ConfigError
from retdm.distributed import World, local_batch_size, shard

# Differences come only from the order of floating-point sums (gradients averaged across
# processes, BatchNorm statistics summed per rank): measured ~1e-6 on the losses after 7 epochs.
TOLERANCE = 1e-4
TINY = ["threads=1", "data.image_size=32", "data.resize=36", "data.batch_size=16", "data.val_fraction=0.2",
        "model.embed_dim=32", "model.label_hidden=32", "loss.k=3", "pretrain.epochs=3", "embed.epochs=2",
        "finetune.epochs=2"]


def run(args: list[str], cwd: Path, nproc: int = 1) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] \
        if nproc > 1 else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*launcher, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def train_and_evaluate(table: Path, out: Path, nproc: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    settings = [a for s in TINY for a in ("--set", s)]
    run(["-m", "retdm.cli", "train", "--data", str(table), "--out", str(out / "runs"), "--quiet", *settings],
        out.parent, nproc)
    run(["-m", "retdm.cli", "evaluate", "--data", str(table), "--runs", str(out / "runs"), "-m", "retdm",
         "--out", str(out / "metrics.parquet")], out.parent, nproc)
    return pd.read_parquet(out / "metrics.parquet"), pd.read_parquet(out / "metrics_retdm_predictions.parquet")


@pytest.fixture(scope="module")
def runs(tiny_table, tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    return {n: (root / f"np{n}", train_and_evaluate(tiny_table, root / f"np{n}", n)) for n in (1, 2)}


def test_two_processes_train_as_one_process_with_the_same_global_batch(runs):
    (one, (metrics1, _)), (two, (metrics2, _)) = runs[1], runs[2]
    for stage in ("bce/pretrain", "retdm/embed", "retdm/finetune"):
        a, b = (pd.read_csv(d / "runs" / stage / "epochs.csv") for d in (one, two))
        assert list(a.columns) == list(b.columns) and len(a) == len(b) > 0
        numeric = a.select_dtypes("number").columns
        np.testing.assert_allclose(a[numeric], b[numeric], atol=TOLERANCE, err_msg=stage)
        assert (a["best"] == b["best"]).all()
    m1, m2 = (m.set_index("metric")["value"] for m in (metrics1, metrics2))
    np.testing.assert_allclose(m1.sort_index(), m2.sort_index(), atol=TOLERANCE)


def test_validation_and_evaluation_count_every_item_exactly_once(runs, tiny_table):
    two, (_, predictions) = runs[2]
    test_ids = read_label_table(tiny_table).split("test").frame["image_id"]
    assert len(predictions) == len(test_ids) and predictions["image_id"].is_unique
    assert list(predictions["image_id"]) == list(test_ids)  # and in table order
    import torch

    num_val = load_checkpoint(two / "runs" / "retdm" / "finetune" / "best.pt")["num_val"]
    for stage in ("bce/pretrain", "retdm/embed", "retdm/finetune"):
        assert (pd.read_csv(two / "runs" / stage / "epochs.csv")["val_items"] == num_val).all()


def test_only_rank_zero_writes(runs):
    (one, _), (two, _) = runs[1], runs[2]
    files = [sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file()) for d in (one, two)]
    assert files[0] == files[1]  # no per-rank copies, no stray temporary files


SCRIPT = """
import torch, torch.distributed as dist
from torch import nn
from retdm.distributed import gather_shards, shard, session, sync_batchnorm, world
with session() as w:
    n = 10
    mine = torch.arange(n)[list(shard(n, w))]
    assert torch.equal(gather_shards(mine), torch.arange(n)), gather_shards(mine)
    torch.manual_seed(0)
    x = torch.randn(12, 3, 4, 4, dtype=torch.float64)
    ref = nn.BatchNorm2d(3).double()
    ref.weight.data.uniform_(0.5, 1.5)
    xr = x.clone().requires_grad_()
    ref_out = ref.train()(xr)
    (ref_out * torch.arange(12.0, dtype=torch.float64).view(-1, 1, 1, 1)).sum().backward()
    bn = nn.BatchNorm2d(3).double()
    bn.weight.data.copy_(ref.weight.data)
    bn = sync_batchnorm(nn.Sequential(bn), torch.device("cpu"))[0]
    rows = list(range(12))[w.rank * 4:(w.rank + 1) * 4]
    xs = x[rows].clone().requires_grad_()
    out = bn(xs)
    (out * torch.tensor(rows, dtype=torch.float64).view(-1, 1, 1, 1)).sum().backward()
    assert torch.allclose(out, ref_out[rows], atol=1e-10)
    assert torch.allclose(xs.grad, xr.grad[rows], atol=1e-10)
    grads = torch.cat([bn.weight.grad, bn.bias.grad]); dist.all_reduce(grads)
    assert torch.allclose(grads, torch.cat([ref.weight.grad, ref.bias.grad]), atol=1e-10)
    assert torch.allclose(bn.running_var, ref.running_var) and torch.allclose(bn.running_mean, ref.running_mean)
    open(f"ok{w.rank}", "w").close()
"""


def test_shards_gather_back_in_order_and_batchnorm_synchronises_exactly(tmp_path):
    """3 gloo processes: uneven shards of 10 items come back as 0..9; the CPU SyncBatchNorm gives
    each rank the outputs and gradients of one BatchNorm over the whole 12-image batch."""
    (tmp_path / "check.py").write_text(SCRIPT)
    run(["check.py"], tmp_path, nproc=3)
    assert sorted(p.name for p in tmp_path.glob("ok*")) == ["ok0", "ok1", "ok2"]  # every rank passed


def test_the_global_batch_must_divide_among_the_processes():
    assert local_batch_size(16, World(0, 2)) == 8
    with pytest.raises(ConfigError, match="data.batch_size.*multiple of 3"):
        local_batch_size(16, World(1, 3))
    assert [len(shard(10, World(r, 3))) for r in range(3)] == [3, 3, 4]


def test_params_say_how_many_processes_and_the_stage_launches_torchrun():
    from pipelines.params import check_distributed, torchrun_command

    params = {"distributed": {"nproc_per_node": 1, "nnodes": 1, "rdzv_endpoint": "node0:29500"}}
    assert torchrun_command(params, ["-m", "pipelines.train", "d", "bce", "pretrain"], "run") is None
    params["distributed"]["nproc_per_node"] = 2
    one_node = torchrun_command(params, ["-m", "pipelines.train", "d", "bce", "pretrain"], "run")
    assert one_node[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert one_node[-5:] == ["-m", "pipelines.train", "d", "bce", "pretrain"]
    params["distributed"]["nnodes"] = 3
    many = torchrun_command(params, ["x.py"], "run")
    assert {"--nnodes=3", "--rdzv_backend=c10d", "--rdzv_endpoint=node0:29500", "--rdzv_id=run"} <= set(many)
    for bad in ({"nproc_per_node": 0, "nnodes": 1, "rdzv_endpoint": "a:1"},
                {"nproc_per_node": 1, "nnodes": 1, "rdzv_endpoint": "nohost"}, {"nproc_per_node": 1}):
        with pytest.raises(ConfigError, match="params.yaml: distributed"):
            check_distributed(bad, Path("params.yaml"))
