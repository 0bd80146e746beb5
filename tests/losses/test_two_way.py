"""The two-way metric loss against a slow loop written straight from Eq. 4-8."""

import math

import pytest
import torch

from retdm.losses import (
    classification_loss,
    gated_neighbour_loss,
    reconstruction_loss,
    two_way_metric_loss,
)


def slow_two_way(f_img, f_lbl, f_nbr_lbl, f_nbr_img, mask, lam, two_way):
    """Python loops over samples and neighbours, from the equations, in float64."""

    def dist(a, b):
        return math.sqrt(sum((float(x) - float(y)) ** 2 for x, y in zip(a, b)))

    def one_way(anchor, positive, negatives, present):
        d_pos = dist(anchor, positive)
        d_neg = [dist(anchor, n) for n, p in zip(negatives, present) if p]
        if not d_neg or d_pos < min(d_neg):  # Eq. 6: zero unless some neighbour is at least as close
            return 0.0
        sims = [-d_pos] + [-d for d in d_neg]  # Eq. 5
        denom = sum(math.exp(s) for s in sims)
        return -math.log(math.exp(sims[0]) / denom)  # L1 = −log p(z = 1 | …)

    total = 0.0
    for i in range(f_img.shape[0]):
        j1 = one_way(f_img[i], f_lbl[i], f_nbr_lbl[i], mask[i])
        j2 = one_way(f_lbl[i], f_img[i], f_nbr_img[i], mask[i]) if two_way else 0.0
        total += j1 + lam * j2  # Eq. 8
    return total / f_img.shape[0]


def random_case(seed, batch=6, k=4, dim=5, mask_p=0.3):
    g = torch.Generator().manual_seed(seed)
    f_img = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    f_lbl = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    f_nbr_lbl = torch.randn(batch, k, dim, generator=g, dtype=torch.float64)
    f_nbr_img = torch.randn(batch, k, dim, generator=g, dtype=torch.float64)
    mask = torch.rand(batch, k, generator=g) > mask_p
    mask[0] = False  # a row with no neighbour at all
    return f_img, f_lbl, f_nbr_lbl, f_nbr_img, mask


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("two_way", [True, False])
@pytest.mark.parametrize("lam", [1.0, 0.3])
def test_matches_slow_loop(seed, two_way, lam):
    f_img, f_lbl, f_nbr_lbl, f_nbr_img, mask = random_case(seed)
    got = two_way_metric_loss(f_img, f_lbl, f_nbr_lbl, f_nbr_img, mask, lam=lam, two_way=two_way)
    want = slow_two_way(f_img, f_lbl, f_nbr_lbl, f_nbr_img, mask, lam, two_way)
    assert got.dtype == torch.float64
    assert abs(got.item() - want) < 1e-10


def test_some_rows_are_gated_and_some_not():
    # The random cases above are only meaningful if the gate takes both values.
    f_img, f_lbl, f_nbr_lbl, _, mask = random_case(0, batch=64)
    d_pos = (f_img - f_lbl).norm(dim=1)
    d_nbr = (f_img[:, None] - f_nbr_lbl).norm(dim=2)
    per_row = gated_neighbour_loss(d_pos, d_nbr, mask)
    assert (per_row == 0).any() and (per_row > 0).any()


def test_gate_is_a_constant_mask():
    # Positive strictly closer than every neighbour: zero loss and zero gradient.
    d_pos = torch.tensor([1.0], requires_grad=True)
    d_nbr = torch.tensor([[2.0, 3.0]], requires_grad=True)
    loss = gated_neighbour_loss(d_pos, d_nbr, torch.ones(1, 2, dtype=torch.bool)).sum()
    loss.backward()
    assert loss.item() == 0.0
    assert d_pos.grad.item() == 0.0 and d_nbr.grad.abs().sum().item() == 0.0
    # A tie (d_pos == min d_nbr) is penalised (Eq. 6 uses ≥), and the gradient is that of the
    # softmax loss alone: the gate contributes nothing to it.
    d_pos = torch.tensor([2.0], requires_grad=True)
    d_nbr = torch.tensor([[2.0, 3.0]], requires_grad=True)
    gated_neighbour_loss(d_pos, d_nbr, torch.ones(1, 2, dtype=torch.bool)).sum().backward()
    p = torch.softmax(torch.tensor([-2.0, -2.0, -3.0]), 0)
    assert torch.allclose(d_pos.grad, 1 - p[:1])  # ∂(−log p0)/∂d_pos = 1 − p0
    assert torch.allclose(d_nbr.grad, -p[1:][None])


def test_masked_neighbours_take_no_part():
    # A masked neighbour that is very close would trigger the gate and dominate the softmax.
    d_pos = torch.tensor([1.0])
    d_nbr = torch.tensor([[0.0, 2.0]])
    mask = torch.tensor([[False, True]])
    assert gated_neighbour_loss(d_pos, d_nbr, mask).item() == 0.0
    f_img, f_lbl, f_nbr_lbl, f_nbr_img, mask = random_case(3)
    poisoned_lbl, poisoned_img = f_nbr_lbl.clone(), f_nbr_img.clone()
    poisoned_lbl[~mask] = f_img[:, None].expand_as(f_nbr_lbl)[~mask]  # distance 0 to the anchor
    poisoned_img[~mask] = 1e6
    a = two_way_metric_loss(f_img, f_lbl, f_nbr_lbl, f_nbr_img, mask)
    b = two_way_metric_loss(f_img, f_lbl, poisoned_lbl, poisoned_img, mask)
    assert torch.allclose(a, b, atol=1e-12, rtol=0)


def test_all_masked_batch_is_zero_and_in_graph():
    f_img, f_lbl, f_nbr_lbl, f_nbr_img, _ = random_case(1)
    f_img.requires_grad_(True)
    mask = torch.zeros(f_nbr_lbl.shape[:2], dtype=torch.bool)
    loss = two_way_metric_loss(f_img, f_lbl, f_nbr_lbl, f_nbr_img, mask)
    assert loss.item() == 0.0 and not torch.isnan(loss)
    assert loss.requires_grad
    loss.backward()
    assert torch.equal(f_img.grad, torch.zeros_like(f_img))


def test_identical_embeddings_give_finite_gradient():
    f = torch.zeros(2, 3, requires_grad=True)
    nbr = torch.zeros(2, 2, 3)
    two_way_metric_loss(f, f, nbr, nbr).backward()
    assert torch.isfinite(f.grad).all()


def test_one_way_ignores_way_two():
    f_img, f_lbl, f_nbr_lbl, f_nbr_img, mask = random_case(5)
    one = two_way_metric_loss(f_img, f_lbl, f_nbr_lbl, None, mask, two_way=False)
    other = two_way_metric_loss(f_img, f_lbl, f_nbr_lbl, f_nbr_img * 7, mask, two_way=False)
    both = two_way_metric_loss(f_img, f_lbl, f_nbr_lbl, f_nbr_img, mask, two_way=True)
    assert one.item() == other.item()
    assert both.item() > one.item()


def test_defaults_are_lambda_1_two_way_and_every_neighbour():
    f_img, f_lbl, f_nbr_lbl, f_nbr_img, _ = random_case(2)
    all_there = torch.ones(f_nbr_lbl.shape[:2], dtype=torch.bool)
    want = slow_two_way(f_img, f_lbl, f_nbr_lbl, f_nbr_img, all_there, 1.0, True)
    assert abs(two_way_metric_loss(f_img, f_lbl, f_nbr_lbl, f_nbr_img).item() - want) < 1e-10


def test_shape_errors_name_shapes():
    f_img, f_lbl, f_nbr_lbl, f_nbr_img, mask = random_case(0)
    with pytest.raises(ValueError, match=r"f_lbl: expected shape \(6, 5\).*got \(6, 4\)"):
        two_way_metric_loss(f_img, f_lbl[:, :4], f_nbr_lbl, f_nbr_img, mask)
    with pytest.raises(ValueError, match=r"^two_way=True needs f_nbr_img of shape \(B, K, D\)$"):
        two_way_metric_loss(f_img, f_lbl, f_nbr_lbl, None, mask)
    with pytest.raises(ValueError, match=r"^nbr_mask: expected a bool tensor, got torch.float32$"):
        two_way_metric_loss(f_img, f_lbl, f_nbr_lbl, f_nbr_img, mask.float())
    with pytest.raises(ValueError, match="nbr_mask"):
        two_way_metric_loss(f_img, f_lbl, f_nbr_lbl, f_nbr_img, mask[:, :2])


def test_reconstruction_and_classification_losses():
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(4, 3, generator=g) > 0.5).double()
    y_rec = torch.randn(4, 3, generator=g, dtype=torch.float64)
    want_rec = sum((y[i, j] - y_rec[i, j]) ** 2 for i in range(4) for j in range(3)) / 12  # Eq. 12
    assert abs(reconstruction_loss(y_rec, y).item() - want_rec.item()) < 1e-12
    logits = torch.randn(4, 3, generator=g, dtype=torch.float64)
    p = torch.sigmoid(logits)
    want_cls = -(y * p.log() + (1 - y) * (1 - p).log()).mean()  # Eq. 10, mean over labels
    assert abs(classification_loss(logits, y).item() - want_cls.item()) < 1e-12
    with pytest.raises(ValueError, match=r"\(4, 3\)"):
        classification_loss(logits[:, :2], y)
    # bool labels are the 0/1 labels; a shape error names both shapes
    assert reconstruction_loss(y_rec, y.bool()).item() == reconstruction_loss(y_rec, y).item()
    with pytest.raises(ValueError, match=r"^y_rec: expected shape \(4, 3\) \(B, M\) like y, got \(4, 2\)$"):
        reconstruction_loss(y_rec[:, :2], y)
