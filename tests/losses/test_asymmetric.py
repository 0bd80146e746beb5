"""ASL against a slow loop written straight from Ridnik et al. (ICCV 2021), Eq. 1-4."""

import math

import pytest
import torch
import torch.nn.functional as F

from retdm.losses.asymmetric import asymmetric_loss


def slow_asl(logits, labels, gamma_pos, gamma_neg, clip, eps):
    """Loops over images and labels, from the equations, in float64."""
    total = 0.0
    batch, num_labels = logits.shape
    for i in range(batch):
        row = 0.0
        for j in range(num_labels):
            p = 1.0 / (1.0 + math.exp(-float(logits[i, j])))
            if labels[i, j]:
                row += -((1.0 - p) ** gamma_pos) * math.log(max(p, eps))  # −L+
            else:
                p_m = max(p - clip, 0.0)  # probability shifting
                row += -(p_m**gamma_neg) * math.log(max(1.0 - p_m, eps))  # −L−
        total += row  # sum over labels
    return total / batch  # mean over images


def random_case(seed, batch=7, num_labels=6):
    g = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(batch, num_labels, generator=g, dtype=torch.float64)
    labels = (torch.rand(batch, num_labels, generator=g) > 0.6).double()
    labels[0] = 1.0  # all-positive row
    labels[1] = 0.0  # all-negative row
    logits[2, :3] = torch.tensor([-40.0, 40.0, -3.5], dtype=torch.float64)  # exercises the eps clamp
    labels[2, :3] = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    return logits, labels


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    "gamma_pos, gamma_neg, clip",
    [(0.0, 4.0, 0.05), (1.0, 4.0, 0.05), (0.5, 2.5, 0.2), (0.0, 0.0, 0.0), (2.0, 0.5, 0.05)],
)
def test_matches_slow_loop(seed, gamma_pos, gamma_neg, clip):
    logits, labels = random_case(seed)
    got = asymmetric_loss(logits, labels, gamma_pos=gamma_pos, gamma_neg=gamma_neg, clip=clip)
    want = slow_asl(logits, labels, gamma_pos, gamma_neg, clip, 1e-8)
    assert got.dtype == torch.float64
    assert abs(got.item() - want) < 1e-10


def test_defaults_are_the_official_coco_setting():
    """γ+ = 0, γ− = 4, m = 0.05, eps = 1e-8 (the official train.py)."""
    logits, labels = random_case(5)
    assert abs(asymmetric_loss(logits, labels).item() - slow_asl(logits, labels, 0.0, 4.0, 0.05, 1e-8)) < 1e-10


@pytest.mark.parametrize("dtype", [torch.bool, torch.int64])
def test_bool_and_integer_labels_are_the_float_labels(dtype):
    logits, labels = random_case(6)
    got = asymmetric_loss(logits, labels.to(dtype))
    assert got.dtype == torch.float64 and got.item() == asymmetric_loss(logits, labels).item()


def test_official_form_is_batch_times_ours():
    # The official code writes 1 − p_m as (1 − p + clip).clamp(max=1) and returns the negated sum.
    logits, labels = random_case(7)
    gamma_pos, gamma_neg, clip, eps = 1.0, 4.0, 0.05, 1e-8
    p = torch.sigmoid(logits)
    xs_neg = (1 - p + clip).clamp(max=1)
    base = labels * torch.log(p.clamp(min=eps)) + (1 - labels) * torch.log(xs_neg.clamp(min=eps))
    pt = p * labels + xs_neg * (1 - labels)
    official = -(base * torch.pow(1 - pt, gamma_pos * labels + gamma_neg * (1 - labels))).sum()
    ours = asymmetric_loss(logits, labels, gamma_pos=gamma_pos, gamma_neg=gamma_neg, clip=clip, eps=eps)
    assert abs(official.item() - logits.shape[0] * ours.item()) < 1e-10


def test_no_focusing_no_shift_is_bce_summed_over_labels():
    logits, labels = random_case(3)
    logits[2, :3] = 0.5  # away from the eps clamp, which BCE does not have (|logit| < log(1/eps) ≈ 18)
    got = asymmetric_loss(logits, labels, gamma_pos=0.0, gamma_neg=0.0, clip=0.0)
    bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").sum(dim=1).mean()
    assert abs(got.item() - bce.item()) < 1e-10


def test_easy_negatives_are_discarded():
    # p < clip for a negative: p_m = 0, so no loss and no gradient.
    logits = torch.tensor([[-4.0, 0.0]], dtype=torch.float64, requires_grad=True)  # σ(−4) ≈ 0.018
    labels = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    loss = asymmetric_loss(logits, labels, gamma_pos=0.0, gamma_neg=4.0, clip=0.05)
    loss.backward()
    assert logits.grad[0, 0].item() == 0.0
    assert abs(loss.item() - math.log(2)) < 1e-12  # only the positive at p = ½ counts


@pytest.mark.parametrize("gamma_pos, gamma_neg", [(0.0, 4.0), (0.5, 0.5), (1.0, 0.3)])
def test_gradient_is_finite_with_degenerate_rows(gamma_pos, gamma_neg):
    # Fractional γ at p_m = 0 or p = 1 is where the official code gives NaN (∞ · 0).
    for dtype in (torch.float32, torch.float64):
        logits, labels = random_case(1)
        logits = logits.to(dtype).requires_grad_(True)
        loss = asymmetric_loss(logits, labels.to(dtype), gamma_pos=gamma_pos, gamma_neg=gamma_neg)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
        assert logits.grad[0].abs().sum() > 0 and logits.grad[1].abs().sum() > 0


def test_gradient_matches_finite_differences():
    logits, labels = random_case(5, batch=3, num_labels=4)
    logits.requires_grad_(True)

    def fn(x):
        return asymmetric_loss(x, labels, gamma_pos=1.0, gamma_neg=3.0, clip=0.1)

    assert torch.autograd.gradcheck(fn, (logits,))


def test_detached_focusing_changes_gradient_not_value():
    logits, labels = random_case(2)
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    la = asymmetric_loss(a, labels, gamma_pos=1.0)
    lb = asymmetric_loss(b, labels, gamma_pos=1.0, detach_focusing=True)
    la.backward()
    lb.backward()
    assert la.item() == lb.item()
    assert not torch.allclose(a.grad, b.grad)
    # Without focusing there is nothing to detach.
    c = logits.clone().requires_grad_(True)
    d = logits.clone().requires_grad_(True)
    asymmetric_loss(c, labels, gamma_pos=0.0, gamma_neg=0.0).backward()
    asymmetric_loss(d, labels, gamma_pos=0.0, gamma_neg=0.0, detach_focusing=True).backward()
    assert torch.equal(c.grad, d.grad)


def test_errors_name_expected_and_got():
    logits, labels = random_case(0)
    with pytest.raises(ValueError, match=r"expected shape \(7, 6\).*got \(7, 5\)"):
        asymmetric_loss(logits[:, :5], labels)
    with pytest.raises(ValueError, match=r"expected shape \(6,\).*got \(6,\)"):
        asymmetric_loss(logits[0], labels[0])
    with pytest.raises(ValueError, match="clip"):
        asymmetric_loss(logits, labels, clip=1.0)
    with pytest.raises(ValueError, match="gamma"):
        asymmetric_loss(logits, labels, gamma_neg=-1.0)
    with pytest.raises(ValueError, match="eps"):
        asymmetric_loss(logits, labels, eps=0.0)
