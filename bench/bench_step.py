"""One RETDM training step against one BCE step on the same backbone and batch.

Baseline: the ``pretrain`` objective (backbone + classifier, BCE), i.e. a plain BCE step.
Measured: the ``finetune`` objective (Lcls + α(J1 + λJ2) + βJrec) with way-2 embeddings from
the bank (target ≤ 1.3×) and from ``forward`` (K extra CNN forwards per sample, the paper's
exact form). Forward, backward and SGD step, median of repeated steps after warm-up.

Run: ``python bench/bench_step.py [--backbone small_cnn] [--batch 64] [--size 64]``.
``main()`` returns the numbers as a dict.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from retdm.checkpoint import build_model  # noqa: E402
from retdm.config import LossConfig, load_config  # noqa: E402
from retdm.data.synthetic import make_synthetic  # noqa: E402
from retdm.data.table import read_label_table  # noqa: E402
from retdm.data.transforms import TransformSpec  # noqa: E402
from retdm.neighbours import EmbeddingBank  # noqa: E402
from retdm.train.data import build_training_data  # noqa: E402
from retdm.train.stages import Objective, fill_bank, set_trainable  # noqa: E402

TARGET = 1.3


def time_steps(objective: Objective, params, batches, repeats: int) -> float:
    """Median seconds of one forward + backward + SGD step."""
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    times = []
    for i in range(repeats + 2):
        batch = batches[i % len(batches)]
        t0 = time.perf_counter()
        loss, _, _ = objective(batch, True)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 2:  # warm-up
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(backbone: str = "small_cnn", batch: int = 64, size: int = 64, repeats: int = 15) -> dict[str, Any]:
    torch.manual_seed(0)
    cfg = load_config("cpu", {"model.backbone": backbone, "data.image_size": size,
                              "data.resize": max(size, round(size * 256 / 224)), "data.batch_size": batch})
    with tempfile.TemporaryDirectory() as tmp:
        make_synthetic(tmp, num_images=max(4 * batch, 400), image_size=size, progress=False)
        table = read_label_table(Path(tmp) / "labels.parquet")
        model = build_model(cfg, table.num_labels)
        spec = TransformSpec(size, cfg.data.resize, model.backbone.mean, model.backbone.std)
        data = build_training_data(table, spec, val_fraction=0.1, k=cfg.loss.k, seed=0, cache=True)
        loader = torch.utils.data.DataLoader(data.fit, batch_size=batch, shuffle=True, drop_last=True)
        batches = [b for _, b in zip(range(3), loader)]
        results: dict[str, Any] = {"backbone": backbone, "batch": batch, "size": size, "k": cfg.loss.k,
                                   "machine": f"{platform.platform()}, {os.cpu_count()} cpus, torch {torch.__version__}"}
        model.train()
        params = [p for m in set_trainable(model, "pretrain") for p in m.parameters()]
        bce = Objective(model, data, LossConfig(alpha=0.0, beta=0.0), 1.0, None)
        results["bce_s"] = time_steps(bce, params, batches, repeats)
        params = [p for m in set_trainable(model, "finetune") for p in m.parameters()]
        bank = EmbeddingBank(len(data.fit), cfg.model.embed_dim)
        fill_bank(model, data, bank, batch, torch.device("cpu"))
        model.train()
        retdm = Objective(model, data, cfg.loss, 1.0, bank)
        retdm.draw_pools(0)
        results["retdm_bank_s"] = time_steps(retdm, params, batches, repeats)
        forward_loss = LossConfig(**{**cfg.loss.__dict__, "way2": "forward"})
        exact = Objective(model, data, forward_loss, 1.0, None)
        exact.draw_pools(0)
        results["retdm_forward_s"] = time_steps(exact, params, batches, max(3, repeats // 5))
    results["ratio_bank"] = results["retdm_bank_s"] / results["bce_s"]
    results["ratio_forward"] = results["retdm_forward_s"] / results["bce_s"]
    results["pass"] = results["ratio_bank"] <= TARGET
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="small_cnn")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    r = main(args.backbone, args.batch, args.size)
    print(f"machine: {r['machine']}")
    print(f"backbone {r['backbone']}, batch {r['batch']}, {r['size']} px, k = {r['k']}")
    print(f"BCE step (baseline):       {r['bce_s'] * 1e3:8.1f} ms")
    print(f"RETDM step, way2=bank:     {r['retdm_bank_s'] * 1e3:8.1f} ms  = {r['ratio_bank']:.2f}x BCE "
          f"(target <= {TARGET}x: {'PASS' if r['pass'] else 'FAIL'})")
    print(f"RETDM step, way2=forward:  {r['retdm_forward_s'] * 1e3:8.1f} ms  = {r['ratio_forward']:.2f}x BCE")
