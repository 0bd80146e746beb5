"""Training stages: what each one trains, resume, and a NaN loss."""

import dataclasses
import re

import pandas as pd
import pytest
import torch

from retdm.data.table import read_label_table
from retdm.data.transforms import TransformSpec
from retdm.errors import ConfigError, TrainingError
from retdm.neighbours import EmbeddingBank
from retdm.train import stages
from retdm.checkpoint import build_model, load_checkpoint
from retdm.config import load_config
from retdm.train.data import build_training_data
from retdm.train.run import train_method
from retdm.train.stages import TRAINABLE, Objective, fill_bank, set_trainable

GROUPS = ("backbone", "classifier", "label_net", "reconstructor")


def one_step_grads(tiny_table, tiny_cfg, stage):
    table = read_label_table(tiny_table)
    torch.manual_seed(0)
    model = build_model(tiny_cfg, table.num_labels)
    spec = TransformSpec(32, 36, model.backbone.mean, model.backbone.std)
    data = build_training_data(table, spec, val_fraction=0.2, k=3, seed=0, cache=True)
    set_trainable(model, stage)
    bank = EmbeddingBank(len(data.fit), tiny_cfg.model.embed_dim)
    fill_bank(model, data, bank, 16, torch.device("cpu"))
    loss_cfg = tiny_cfg.loss if stage not in ("pretrain", "probe") else type(tiny_cfg.loss)(alpha=0.0, beta=0.0)
    objective = Objective(model, data, loss_cfg, 0.0 if stage == "embed" else 1.0, bank)
    objective.draw_pools(0)
    model.train()
    images, labels, rows = next(iter(torch.utils.data.DataLoader(data.fit, batch_size=16)))
    loss, _, _ = objective((images, labels, rows), True)
    loss.backward()
    return model


@pytest.mark.parametrize("stage", ["pretrain", "embed", "finetune"])
def test_each_stage_trains_exactly_its_groups(tiny_table, tiny_cfg, stage):
    model = one_step_grads(tiny_table, tiny_cfg, stage)
    for group in GROUPS:
        for name, p in getattr(model, group).named_parameters():
            if group in TRAINABLE[stage]:
                assert p.requires_grad, f"{stage}: {group}.{name} should be trainable"
                assert p.grad is not None and torch.isfinite(p.grad).all(), f"{stage}: {group}.{name} got no gradient"
                assert p.grad.abs().sum() > 0 or "bias" in name and group == "backbone", f"{stage}: {group}.{name} zero grad"
            else:
                assert not p.requires_grad and p.grad is None, f"{stage}: {group}.{name} should be frozen"


def test_the_probe_trains_only_the_backbones_projection_and_the_classifier(tiny_table, tiny_cfg):
    model = one_step_grads(tiny_table, tiny_cfg, "probe")
    head = {id(p) for p in [*model.backbone.projection.parameters(), *model.classifier.parameters()]}
    assert len(head) == 4  # two weights, two biases
    for name, p in model.named_parameters():
        assert p.requires_grad == (id(p) in head), name
        assert (p.grad is not None and p.grad.abs().sum() > 0) == (id(p) in head), name


def test_the_linear_probe_keeps_the_pretrained_trunk_as_it_is(tiny_table, tiny_cfg, tmp_path):
    """The ImageNet trunk's weights and BatchNorm statistics come out of training unchanged."""
    cfg = load_config("cpu", {**dict_overrides(tiny_cfg), "model.backbone": "efficientnet_lite0",
                              "model.pretrained": True, "probe.epochs": 1})
    best = train_method(tiny_table, tmp_path, cfg, "linear_probe", progress=False)
    assert best == tmp_path / "linear_probe/probe/best.pt"
    trained = weights(best)
    torch.manual_seed(cfg.seed)  # as train_method builds it
    start = build_model(cfg, read_label_table(tiny_table).num_labels).state_dict()
    changed = {k for k in start if not torch.equal(start[k], trained[k])}
    assert changed == {"backbone.net._fc.weight", "backbone.net._fc.bias", "classifier.fc.weight", "classifier.fc.bias"}
    assert any("running_mean" in k for k in start)  # BatchNorm statistics are among the unchanged
    assert "train_cls" in pd.read_csv(tmp_path / "linear_probe/probe/epochs.csv")


def test_the_trunk_trains_at_its_own_fraction_of_the_stage_lr(tiny_table, tiny_cfg, tmp_path):
    """optim.trunk_lr_scale: the backbone's trunk at scale × lr, its projection and the heads at the lr."""
    def pretrain(scale, out):
        cfg = dataclasses.replace(tiny_cfg, optim=dataclasses.replace(tiny_cfg.optim, trunk_lr_scale=scale))
        return load_checkpoint(train_method(tiny_table, out, cfg, "bce", progress=False))

    torch.manual_seed(tiny_cfg.seed)
    model = build_model(tiny_cfg, read_label_table(tiny_table).num_labels)
    start = model.state_dict()
    projection = {id(p) for p in model.backbone.projection.parameters()}
    head = {f"backbone.{n}" for n, p in model.backbone.named_parameters() if id(p) in projection}
    trunk = {f"backbone.{n}" for n, _ in model.backbone.named_parameters()} - head
    slow = pretrain(1e-9, tmp_path / "slow")
    groups = slow["optimizer"]["param_groups"]
    lr = tiny_cfg.pretrain.lr
    assert [g["lr"] for g in groups] == [lr, pytest.approx(lr * 1e-9)]
    assert len(groups[1]["params"]) == len(trunk) and len(head) == 2
    moved = {k for k in trunk | head if not torch.allclose(start[k], slow["model"][k], atol=1e-6, rtol=0)}
    assert moved == head  # the trunk all but stands still, the projection trains
    same = pretrain(1.0, tmp_path / "same")
    assert len(same["optimizer"]["param_groups"]) == 1
    assert {k for k in trunk if not torch.allclose(start[k], same["model"][k], atol=1e-6, rtol=0)}


def test_the_linear_probe_refuses_a_backbone_without_pretrained_weights(tiny_table, tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match="model.pretrained is false"):
        train_method(tiny_table, tmp_path, tiny_cfg, "linear_probe", progress=False)
    assert not (tmp_path / "linear_probe/probe/best.pt").exists()


def dict_overrides(cfg) -> dict:
    """``cfg`` as dotted overrides of its profile (every leaf)."""
    from pipelines.params import dotted

    tree = cfg.to_dict()
    tree.pop("profile")
    return dotted(tree)


def weights(path):
    return load_checkpoint(path)["model"]


@pytest.mark.parametrize("method", ["retdm", "retdm_imgnbr"])
def test_resume_after_interruption_ends_with_the_same_weights(tiny_table, tiny_cfg, tmp_path, method):
    """retdm_imgnbr: the image neighbours the stage mined when it started are in its checkpoints."""
    full = train_method(tiny_table, tmp_path / "full", tiny_cfg, method, progress=False)

    def interrupt(stage, epoch):
        if stage == "finetune" and epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_method(tiny_table, tmp_path / "cut", tiny_cfg, method, progress=False, on_epoch_end=interrupt)
    assert load_checkpoint(tmp_path / f"cut/{method}/finetune/last.pt")["epoch"] == 1
    resumed = train_method(tiny_table, tmp_path / "cut", tiny_cfg, method, progress=False)
    for a, b in [(full, resumed), (full.with_name("last.pt"), resumed.with_name("last.pt"))]:
        wa, wb = weights(a), weights(b)
        assert wa.keys() == wb.keys()
        for key in wa:
            assert torch.equal(wa[key], wb[key]), key
    history = pd.read_csv(tmp_path / f"cut/{method}/finetune/epochs.csv")
    assert history["epoch"].tolist() == [1, 2]


def test_retdm_imgnbr_mines_each_images_nearest_fit_images_from_the_model_its_stage_starts_from(
        tiny_table, tiny_cfg, tmp_path):
    from retdm.neighbours import image_neighbours
    from retdm.train.stages import embed_items

    best = train_method(tiny_table, tmp_path, tiny_cfg, "retdm_imgnbr", progress=False)
    table = read_label_table(tiny_table)
    start = build_model(tiny_cfg, table.num_labels)
    start.load_state_dict(weights(tmp_path / "bce/pretrain/best.pt"))  # embed freezes the backbone
    spec = TransformSpec(32, 36, start.backbone.mean, start.backbone.std)
    data = build_training_data(table, spec, val_fraction=tiny_cfg.data.val_fraction, k=3, seed=0, cache=True)
    cpu = torch.device("cpu")
    fit, val = embed_items(start, data.fit_eval, 16, cpu), embed_items(start, data.val, 16, cpu)
    for stage in ("embed", "finetune"):
        mined = load_checkpoint(best.parent.parent / stage / "best.pt")["extra"]["image_nbr"]
        assert mined["fit_index"].shape == (len(data.fit), 10)
        for part, query, labels, own in (("fit", fit, data.fit.labels, True), ("val", val, data.val.labels, False)):
            index, mask = image_neighbours(query, fit, labels, data.fit.labels, 10, exclude_self=own)
            assert torch.equal(mined[f"{part}_index"], index), (stage, part)
            assert torch.equal(mined[f"{part}_mask"], mask), (stage, part)
    assert not load_checkpoint(tmp_path / "retdm_imgnbr/finetune/best.pt")["extra"]["image_nbr"]["fit_mask"].all()


def test_finished_stages_are_not_trained_again(tiny_table, tiny_cfg, tmp_path):
    train_method(tiny_table, tmp_path, tiny_cfg, "bce", progress=False)
    stamp = (tmp_path / "bce/pretrain/last.pt").stat().st_mtime_ns
    seen = []
    train_method(tiny_table, tmp_path, tiny_cfg, "retdm", progress=False, on_epoch_end=lambda s, e: seen.append(s))
    assert (tmp_path / "bce/pretrain/last.pt").stat().st_mtime_ns == stamp
    assert seen == ["embed", "embed", "finetune", "finetune"]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_table, tiny_cfg, tmp_path, monkeypatch):
    real = stages.classification_loss
    poison = {"on": False}

    def poisoned(logits, y):
        loss = real(logits, y)
        return loss * float("nan") if poison["on"] else loss

    monkeypatch.setattr(stages, "classification_loss", poisoned)
    with pytest.raises(TrainingError, match=r"stage 'pretrain'.*epoch 2, step 1;.*last good checkpoint.*last\.pt"):
        train_method(tiny_table, tmp_path, tiny_cfg, "bce", progress=False,
                     on_epoch_end=lambda stage, epoch: poison.update(on=True))
    assert load_checkpoint(tmp_path / "bce/pretrain/last.pt")["epoch"] == 1
    assert len(pd.read_csv(tmp_path / "bce/pretrain/epochs.csv")) == 1


def test_a_stage_refuses_to_continue_a_differently_configured_earlier_stage(tiny_table, tiny_cfg, tmp_path):
    import dataclasses

    train_method(tiny_table, tmp_path, tiny_cfg, "bce", progress=False)
    other = dataclasses.replace(tiny_cfg, pretrain=dataclasses.replace(tiny_cfg.pretrain, lr=0.5))
    with pytest.raises(TrainingError, match=r"bce/pretrain/best\.pt: was trained with pretrain = .*'lr': 0\.5"):
        train_method(tiny_table, tmp_path, other, "retdm", stages=("embed",), progress=False)
    assert not (tmp_path / "retdm" / "embed").exists()


def test_identical_runs_write_byte_identical_outputs(tiny_table, tiny_cfg, tmp_path):
    """So that `dvc repro` and the Prefect flow leave the same dvc.lock."""
    from retdm.provenance import file_sha256

    for name in ("a", "b"):
        train_method(tiny_table, tmp_path / name, tiny_cfg, "bce", progress=False)
    for file in ("best.pt", "last.pt", "epochs.csv"):
        assert file_sha256(tmp_path / "a/bce/pretrain" / file) == file_sha256(tmp_path / "b/bce/pretrain" / file), file
    assert pd.read_csv(tmp_path / "a/bce/pretrain/timing.csv")["epoch"].tolist() == [1, 2]


@pytest.mark.parametrize("method, term", [("asl", "cls"), ("center_loss", "center")])
def test_deep_baselines_continue_the_bce_model_with_their_own_loss(tiny_table, tiny_cfg, tmp_path, method, term):
    best = train_method(tiny_table, tmp_path, tiny_cfg, method, progress=False)
    assert best == tmp_path / method / "finetune" / "best.pt" and (tmp_path / "bce/pretrain/best.pt").is_file()
    history = pd.read_csv(tmp_path / method / "finetune/epochs.csv")
    assert f"train_{term}" in history and "train_metric" not in history and "train_rec" not in history
    ckpt = load_checkpoint(best)
    assert ckpt["config"]["loss"]["alpha"] == 0.0
    if method == "center_loss":
        from retdm.losses.center import CenterLossCenters

        centers = ckpt["extra"]["centers"]["centers"]
        assert centers.shape == (10, tiny_cfg.model.embed_dim)
        start = CenterLossCenters(10, tiny_cfg.model.embed_dim, seed=tiny_cfg.seed).centers.detach()
        assert not torch.allclose(centers, start)  # the centers train with the network


def test_asl_is_bce_scaled_when_it_has_no_focusing_or_clip():
    from retdm.config import LossConfig
    from retdm.losses import asymmetric_loss, classification_loss

    logits, labels = torch.randn(8, 5, dtype=torch.float64), (torch.rand(8, 5) > 0.5).double()
    objective = Objective(None, None, LossConfig(classification="asl"), 1.0, None)
    assert torch.allclose(objective.classify(logits, labels), asymmetric_loss(logits, labels) / 5)
    assert torch.allclose(asymmetric_loss(logits, labels, gamma_neg=0.0, clip=0.0) / 5,
                          classification_loss(logits, labels))


def test_the_thread_count_is_recorded_and_restored(tiny_table, tiny_cfg, tmp_path):
    before = torch.get_num_threads()
    cfg = dataclasses.replace(tiny_cfg, threads=1)
    during = []
    best = train_method(tiny_table, tmp_path, cfg, "bce", progress=False,
                        on_epoch_end=lambda stage, epoch: during.append(torch.get_num_threads()))
    assert during == [1, 1] and torch.get_num_threads() == before
    assert load_checkpoint(best)["config"]["threads"] == 1


def gated_softmax(anchor, positive, negatives, mask):
    """DESIGN §1, one row: −log softmax of −[d(a, p), d(a, n_1) …] at the positive (Euclidean, not
    squared; masked negatives left out), kept only where some negative is at least as close."""
    d_pos = torch.linalg.vector_norm(anchor - positive)
    d_neg = torch.linalg.vector_norm(anchor[None] - negatives[mask], dim=1)
    if len(d_neg) == 0 or d_pos < d_neg.min():
        return torch.zeros((), dtype=anchor.dtype)
    return -torch.log_softmax(-torch.cat([d_pos[None], d_neg]), dim=0)[0]


def test_the_finetune_step_loss_is_lcls_plus_alpha_j_plus_beta_jrec(tiny_table, tiny_cfg, tmp_path, monkeypatch):
    """Eq. 13 with J = mean(J1 + λ·J2) and Jrec = MSE(Φrec(f_y), y), each part recomputed here from
    the model's own submodules; α, β, λ distinct, so swapping two of them (or reconstructing f_I
    instead of f_y) changes the loss."""
    import torch.nn.functional as F

    from retdm.neighbours import sample_pool_items

    alpha, beta, lam = 0.3, 0.7, 0.5
    cfg = dataclasses.replace(tiny_cfg, loss=dataclasses.replace(tiny_cfg.loss, alpha=alpha, beta=beta, lam=lam,
                                                                 two_way=True, way2="bank")).validate()
    table = read_label_table(tiny_table)
    torch.manual_seed(0)
    model = build_model(cfg, table.num_labels)
    data = build_training_data(table, TransformSpec(32, 36, model.backbone.mean, model.backbone.std),
                               val_fraction=0.2, k=cfg.loss.k, seed=0, cache=True)
    captured = []  # the finetune stage's own StageRun, its step loss included, not run
    monkeypatch.setattr(stages, "run_stage", captured.append)
    stages.finetune(model, data, cfg, tmp_path, {}, None, device=torch.device("cpu"), progress=False)
    (run,) = captured
    run.before_training()  # fills the bank of way-2 image embeddings
    run.before_epoch(0)  # draws the crops and the way-2 pool images
    images, labels, rows = next(iter(torch.utils.data.DataLoader(run.fit, batch_size=16)))
    index, mask = data.fit_nbr.index[rows], data.fit_nbr.mask[rows]  # (B, K) neighbour label sets
    items = sample_pool_items(data.neighbours, index, run.step_loss.draws[True][rows])  # (B, K) their pool images
    with torch.no_grad():  # way 2's images: their test view, eval mode, before a train step moves BatchNorm's stats
        f_nbr_img = model.eval().backbone(data.fit_eval.images(items)).view(*items.shape, -1)  # (B, K, D)
    model.train()
    loss, parts, _ = run.step_loss((images, labels, rows), True)

    with torch.no_grad():
        f_img = model.backbone(images)  # (B, D) f_I, train mode as the step
        cls = F.binary_cross_entropy_with_logits(model.classifier(f_img), labels)
        f_y = model.label_net(labels)  # (B, D)
        f_nbr_y = model.label_net(data.sets[index])  # (B, K, D)
        j1 = torch.stack([gated_softmax(f_img[i], f_y[i], f_nbr_y[i], mask[i]) for i in range(len(rows))])
        j2 = torch.stack([gated_softmax(f_y[i], f_img[i], f_nbr_img[i], mask[i]) for i in range(len(rows))])
        j = (j1 + lam * j2).mean()
        rec = (model.reconstructor(f_y) - labels).pow(2).mean()
    assert (j1 > 0).any() and (j2 > 0).any()  # both ways take part in this batch
    assert abs(j - rec) > 0.1 and abs(cls - rec) > 0.1  # so a swap of α and β would show
    assert (model.reconstructor(f_img) - labels).pow(2).mean().sub(rec).abs() > 0.01  # Φrec(f_I) would show
    torch.testing.assert_close(parts["cls"], cls, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(parts["metric"], j, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(parts["rec"], rec, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss.detach(), cls + alpha * j + beta * rec, rtol=1e-5, atol=1e-6)


def test_a_fit_part_smaller_than_one_batch_is_refused_before_anything_is_written(tiny_table, tiny_cfg, tmp_path):
    """The loader drops the incomplete batch: such a run would train nothing and write an untrained best.pt."""
    from retdm.errors import ConfigError

    big = dataclasses.replace(tiny_cfg, data=dataclasses.replace(tiny_cfg.data, batch_size=128))
    with pytest.raises(ConfigError, match=r"stage 'pretrain': the fit part has 77 items, fewer than one batch of "
                                          r"config key 'data.batch_size' = 128.*--set data.batch_size=77"):
        train_method(tiny_table, tmp_path / "run", big, "bce", progress=False)
    assert not (tmp_path / "run").exists()


def test_the_one_batch_rule_counts_the_global_batch_under_torchrun():
    from retdm.errors import ConfigError
    from retdm.train.loop import check_one_batch

    check_one_batch("embed", 32, 32, processes=4)  # 8 items each: one local batch of 8 on every process
    with pytest.raises(ConfigError, match=r"31 items.*= 32 \(the global batch over 4 processes\).*batch_size=28"):
        check_one_batch("embed", 31, 32, processes=4)  # 7 items each, local batches of 8: no step


@pytest.mark.parametrize("way2, training, two_way, image_k", [
    ("forward", True, True, 0), ("forward", False, True, 0), ("bank", False, True, 0), ("bank", True, False, 0),
    ("bank", True, True, 4), ("forward", False, True, 4), ("bank", False, False, 4)])
def test_the_metric_term_follows_the_part_the_mask_and_the_way2_mode(tiny_table, tiny_cfg, way2, training, two_way,
                                                                       image_k):
    """J = mean(J1 + λ·J2) of a batch, recomputed here: the fit part's neighbour sets in training and
    the validation part's otherwise; way 2's images forwarded in their train view (training) or test
    view (validation), or read from the bank; masked neighbour slots left out; one-way: J = mean(J1).
    retdm_imgnbr (image_k > 0): the item's nearest fit images follow the K label-set neighbours, with
    their own label sets in way 1 and themselves in way 2."""
    from retdm.neighbours import image_neighbours, sample_pool_items
    from retdm.train.stages import ImageNeighbourTable

    lam = 0.5
    loss_cfg = dataclasses.replace(tiny_cfg.loss, alpha=1.0, beta=0.0, lam=lam, two_way=two_way, way2=way2)
    table = read_label_table(tiny_table)
    torch.manual_seed(0)
    model = build_model(tiny_cfg, table.num_labels)
    data = build_training_data(table, TransformSpec(32, 36, model.backbone.mean, model.backbone.std),
                               val_fraction=0.2, k=3, seed=0, cache=True)
    for nbr in (data.fit_nbr, data.val_nbr):  # as for label sets with fewer than K neighbours
        nbr.mask[::2, -1] = False
    bank = EmbeddingBank(len(data.fit), tiny_cfg.model.embed_dim)
    fill_bank(model, data, bank, 16, torch.device("cpu"))
    stored = bank.memory.clone()  # a training step then writes its own rows
    data.fit.transform.draw_crops(0, len(data.fit))
    objective = Objective(model, data, loss_cfg, 0.0, bank)
    objective.draw_pools(0)
    nbr = data.fit_nbr if training else data.val_nbr
    part = data.fit if training else data.val
    if image_k:
        objective.images = ImageNeighbourTable(image_k)
        objective.images.mine(model, data, 16, torch.device("cpu"))
    images, labels, rows = next(iter(torch.utils.data.DataLoader(part, batch_size=16)))
    model.train(training)
    _, parts, _ = objective((images, labels, rows), training)

    index, mask = nbr.index[rows], nbr.mask[rows]  # (B, K)
    items = sample_pool_items(data.neighbours, index, objective.draws[training][rows])  # (B, K)
    if image_k:
        model.eval()
        with torch.no_grad():
            val_images = torch.stack([data.val[i][0] for i in range(len(data.val))])
            query = stored if training else model.backbone(val_images)
        near, near_mask = image_neighbours(query, stored, part.labels, data.fit.labels, image_k,
                                           exclude_self=training)
        near, near_mask = near[rows], near_mask[rows]  # (B, Ki)
        assert not (training and (near == rows[:, None]).any())  # never its own neighbour
        assert (near_mask == (data.fit.labels[near] != labels[:, None]).any(2)).all()
        index = torch.cat([index, torch.from_numpy(data.neighbours.set_of_item)[near]], 1)
        mask, items = torch.cat([mask, near_mask], 1), torch.cat([items, near], 1)
        model.train(training)
    with torch.no_grad():
        f_img, f_y = model.backbone(images), model.label_net(labels)  # (B, D) each
        f_nbr_y = model.label_net(data.sets[index])  # (B, K, D)
        if way2 == "bank":
            f_nbr_img = stored[items]
        else:
            view = data.fit if training else data.fit_eval
            f_nbr_img = model.backbone(view.images(items)).view(*items.shape, -1)  # (B, K, D)
        j1 = torch.stack([gated_softmax(f_img[i], f_y[i], f_nbr_y[i], mask[i]) for i in range(len(rows))])
        j2 = torch.stack([gated_softmax(f_y[i], f_img[i], f_nbr_img[i], mask[i]) for i in range(len(rows))])
    assert (~mask).any() and (j1 > 0).any() and (j2 > 0).any()
    torch.testing.assert_close(parts["metric"], (j1 + lam * j2).mean() if two_way else j1.mean(),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("alpha, beta", [(0.3, 0.7), (0.3, 0.0), (0.0, 0.7)])
def test_the_embed_step_loss_is_alpha_j_plus_beta_jrec_without_lcls(tiny_table, tiny_cfg, tmp_path, monkeypatch,
                                                                     alpha, beta):
    """Stage 2 (backbone and classifier frozen) learns from α·J + β·Jrec alone, which needs one of
    α, β > 0; Lcls is not part of its loss (nor of the validation loss that picks its best epoch)."""
    cfg = dataclasses.replace(tiny_cfg, loss=dataclasses.replace(tiny_cfg.loss, alpha=alpha, beta=beta))
    table = read_label_table(tiny_table)
    torch.manual_seed(0)
    model = build_model(cfg, table.num_labels)
    data = build_training_data(table, TransformSpec(32, 36, model.backbone.mean, model.backbone.std),
                               val_fraction=0.2, k=cfg.loss.k, seed=0, cache=True)
    captured = []
    monkeypatch.setattr(stages, "run_stage", captured.append)
    stages.embed(model, data, cfg, tmp_path, {}, None, device=torch.device("cpu"), progress=False)
    (run,) = captured
    run.before_training()
    run.before_epoch(0)
    batch = next(iter(torch.utils.data.DataLoader(run.fit, batch_size=16)))
    loss, parts, _ = run.step_loss(batch, True)
    assert set(parts) == {"loss", *(["metric"] if alpha else []), *(["rec"] if beta else [])}  # no "cls"
    want = alpha * parts.get("metric", 0.0) + beta * parts.get("rec", 0.0)
    torch.testing.assert_close(loss.detach(), torch.as_tensor(want, dtype=loss.dtype), rtol=1e-5, atol=1e-6)
    none = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, alpha=0.0, beta=0.0))
    with pytest.raises(ConfigError, match=r"^stage 'embed' trains the label net with α·J \+ β·Jrec; with loss.alpha = "
                                          r"loss.beta = 0 it has nothing to learn: set one of them > 0 or train "
                                          r"method 'bce'$"):
        stages.embed(model, data, none, tmp_path, {}, None, device=torch.device("cpu"), progress=False)


def test_a_starting_point_from_another_label_table_is_refused_naming_both(tmp_path):
    from retdm.train.stages import starting_point

    from retdm.checkpoint import save_checkpoint

    ckpt = tmp_path / "best.pt"
    save_checkpoint(ckpt, {"data_sha256": "aaa111", "model": {}, "fingerprint": {}})
    record = {"data_sha256": "bbb222", "data_path": "/data/mine/labels.parquet", "fingerprint": {}}
    with pytest.raises(TrainingError, match=rf"^{re.escape(str(ckpt))}: was trained on another label table \(sha256 "
                                            r"aaa111\); retrain the earlier stage on /data/mine/labels\.parquet$"):
        starting_point(ckpt, record)


@pytest.mark.parametrize("stage", ["embed", "finetune"])
def test_embed_and_finetune_check_the_checkpoint_they_continue(tiny_table, tiny_cfg, tmp_path, stage):
    """Each continues its init checkpoint only when it was trained on this run's label table."""
    table = read_label_table(tiny_table)
    torch.manual_seed(0)
    model = build_model(tiny_cfg, table.num_labels)
    data = build_training_data(table, TransformSpec(32, 36, model.backbone.mean, model.backbone.std),
                               val_fraction=0.2, k=3, seed=0, cache=True)
    from retdm.checkpoint import save_checkpoint

    ckpt = tmp_path / "other.pt"
    save_checkpoint(ckpt, {"data_sha256": "another", "model": model.state_dict(), "fingerprint": {}})
    run = getattr(stages, stage)
    with pytest.raises(TrainingError, match="was trained on another label table"):
        run(model, data, tiny_cfg, tmp_path / stage, {"data_sha256": "this", "fingerprint": {}}, ckpt,
            device=torch.device("cpu"), progress=False)


def test_a_two_way_step_before_draw_pools_is_refused(tiny_table, tiny_cfg):
    loss_cfg = dataclasses.replace(tiny_cfg.loss, alpha=1.0, two_way=True, way2="bank")
    table = read_label_table(tiny_table)
    torch.manual_seed(0)
    model = build_model(tiny_cfg, table.num_labels)
    data = build_training_data(table, TransformSpec(32, 36, model.backbone.mean, model.backbone.std),
                               val_fraction=0.2, k=3, seed=0, cache=True)
    objective = Objective(model, data, loss_cfg, 0.0, EmbeddingBank(len(data.fit), tiny_cfg.model.embed_dim))
    batch = next(iter(torch.utils.data.DataLoader(data.fit, batch_size=8)))
    with pytest.raises(TrainingError, match=r"^Objective\.draw_pools\(seed\) must run before each epoch of a "
                                            r"two-way stage$"):
        objective(batch, True)


@pytest.mark.parametrize("alpha, beta, center, has_centers, extra", [
    (0.0, 0.0, 0.0, False, set()),                            # BCE: the pretrain and the bce_ft control
    (1.0, 0.0, 0.0, False, {"label_net"}),                    # the metric term reaches Φy
    (0.0, 1.0, 0.0, False, {"label_net", "reconstructor"}),   # Jrec = MSE(Φrec(f_y), y)
    (1.0, 1.0, 0.0, False, {"label_net", "reconstructor"}),   # RETDM
    (0.0, 0.0, 1.0, True, {"centers"}),                       # center_loss
    (0.0, 0.0, 1.0, False, set()),                            # no centers to train
    (0.0, 0.0, 0.0, True, set()),                             # centers kept but weighted 0
])
def test_the_objective_trains_exactly_the_parts_its_loss_reaches(alpha, beta, center, has_centers, extra):
    from retdm.config import LossConfig

    objective = Objective(None, None, LossConfig(alpha=alpha, beta=beta, center=center), 1.0, None,
                          centers=object() if has_centers else None)
    used = objective.used_modules()
    assert used == {"backbone", "classifier"} | extra
    assert used <= set(TRAINABLE["finetune"]) | {"centers"}  # names the trainer can find


def test_pool_draws_are_float64_and_a_function_of_the_epoch_seed_alone():
    """The way-2 pool images of an epoch come from the seed only (not from torch's global stream, which
    the batch order and the process count move), in float64 so that a draw picks the same pool item
    at any pool size."""
    from types import SimpleNamespace

    from retdm.config import LossConfig

    data = SimpleNamespace(fit_nbr=SimpleNamespace(index=torch.zeros((7, 3), dtype=torch.int64)), fit=range(7),
                           val=range(4))
    objective = Objective(None, data, LossConfig(), 1.0, None)
    objective.draw_pools(5)
    first = {part: d.clone() for part, d in objective.draws.items()}
    assert first[True].shape == (7, 3) and first[False].shape == (4, 3)
    assert first[True].dtype == first[False].dtype == torch.float64
    torch.rand(100)  # the global stream moves on: the draws must not
    objective.draw_pools(5)
    assert all(torch.equal(objective.draws[p], first[p]) for p in (True, False))
    objective.draw_pools(6)
    assert not torch.equal(objective.draws[True], first[True])


def test_the_center_loss_baseline_adds_its_weighted_center_term_and_only_with_centers(tiny_table, tiny_cfg):
    """L = w_cls·Lcls + λc·Lcenter for ``center_loss`` (its centers given); no center term without them
    or at weight 0."""
    from retdm.config import LossConfig
    from retdm.losses.center import CenterLossCenters, multilabel_center_loss

    table = read_label_table(tiny_table)
    torch.manual_seed(0)
    model = build_model(tiny_cfg, table.num_labels).train()
    centers = CenterLossCenters(table.num_labels, tiny_cfg.model.embed_dim, seed=0)
    images = torch.randn(6, 3, 32, 32)
    labels = torch.tensor(table.labels()[:6], dtype=torch.float32)
    batch = (images, labels, torch.arange(6))
    loss, parts, _ = Objective(model, None, LossConfig(alpha=0.0, beta=0.0, center=0.25), 0.5, None, centers)(batch, True)
    with torch.no_grad():
        expected = multilabel_center_loss(model.backbone(images), labels, centers.centers)
    assert parts["center"] > 0
    torch.testing.assert_close(parts["center"], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss.detach(), 0.5 * parts["cls"] + 0.25 * parts["center"], rtol=1e-5, atol=1e-6)
    for weight, given in ((0.25, None), (0.0, centers)):
        _, parts, _ = Objective(model, None, LossConfig(alpha=0.0, beta=0.0, center=weight), 0.5, None, given)(batch, True)
        assert "center" not in parts


def test_the_pretrain_loss_is_the_bce_alone_at_weight_one(tiny_table, tiny_cfg, tmp_path):
    """The BCE baseline (and every method's starting point) minimises Lcls alone: its logged loss is its
    classification term, and no other term is logged."""
    train_method(tiny_table, tmp_path, tiny_cfg, "bce", progress=False)
    history = pd.read_csv(tmp_path / "bce/pretrain/epochs.csv")
    terms = {c.removeprefix("train_") for c in history if c.startswith("train_")}
    assert terms == {"loss", "cls"}, terms
    assert history["train_loss"].tolist() == pytest.approx(history["train_cls"].tolist(), rel=1e-6)


def test_the_seed_decides_the_data_order(tiny_table, tiny_cfg, tmp_path):
    """The same network trained under two seeds: different weights (the batches and the crops follow
    cfg.seed); under one seed, the same (test_identical_runs_write_byte_identical_outputs)."""
    import copy

    table = read_label_table(tiny_table)
    torch.manual_seed(0)
    model = build_model(tiny_cfg, table.num_labels)
    data = build_training_data(table, TransformSpec(32, 36, model.backbone.mean, model.backbone.std),
                               val_fraction=0.2, k=tiny_cfg.loss.k, seed=0, cache=True)
    found = {}
    for seed in (0, 1):
        cfg = dataclasses.replace(tiny_cfg, seed=seed)
        best = stages.pretrain(copy.deepcopy(model), data, cfg, tmp_path / str(seed), {}, device=torch.device("cpu"),
                               progress=False)
        found[seed] = weights(best)
    assert not all(torch.equal(found[0][k], found[1][k]) for k in found[0])
