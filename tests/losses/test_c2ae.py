"""C2AE's losses against slow loops written straight from Yeh et al. (AAAI 2017)."""

import math

import pytest
import torch

from retdm.losses.c2ae import (
    c2ae_loss,
    correlation_ranking_loss,
    latent_alignment_loss,
    orthogonality_penalty,
)


def slow_alignment(fx, fe):
    """||Fx(X) − Fe(Y)||²_F / B, loops over instances and coordinates."""
    batch, dim = fx.shape
    return sum((float(fx[i, d]) - float(fe[i, d])) ** 2 for i in range(batch) for d in range(dim)) / batch


def slow_orthogonality(z):
    """||zᵀz/B − I||²_F, entry by entry."""
    batch, dim = z.shape
    total = 0.0
    for a in range(dim):
        for b in range(dim):
            gram = sum(float(z[i, a]) * float(z[i, b]) for i in range(batch)) / batch
            total += (gram - (1.0 if a == b else 0.0)) ** 2
    return total


def slow_ranking(scores, labels):
    """(1/B) Σ_i E_i, E_i = Σ_{p∈Y⁺, n∈Y⁻} exp(s_n − s_p) / (|Y⁺||Y⁻|); 0 without pairs."""
    batch, num_labels = scores.shape
    total = 0.0
    for i in range(batch):
        positives = [m for m in range(num_labels) if labels[i, m]]
        negatives = [m for m in range(num_labels) if not labels[i, m]]
        if not positives or not negatives:
            continue
        e_i = sum(math.exp(float(scores[i, n]) - float(scores[i, p])) for p in positives for n in negatives)
        total += e_i / (len(positives) * len(negatives))
    return total / batch


def random_case(seed, batch=6, dim=3, num_labels=5):
    g = torch.Generator().manual_seed(seed)
    fx = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    fe = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    scores = 2 * torch.randn(batch, num_labels, generator=g, dtype=torch.float64)
    labels = (torch.rand(batch, num_labels, generator=g) > 0.5).double()
    labels[0] = 1.0  # all-positive row: no pair
    labels[1] = 0.0  # all-negative row: no pair
    return fx, fe, scores, labels


@pytest.mark.parametrize("num_labels", [5, 2])  # 2: a row with one positive has exactly one pair
@pytest.mark.parametrize("seed", range(6))
def test_each_term_matches_slow_loop(seed, num_labels):
    fx, fe, scores, labels = random_case(seed, num_labels=num_labels)
    assert abs(latent_alignment_loss(fx, fe).item() - slow_alignment(fx, fe)) < 1e-10
    assert abs(orthogonality_penalty(fx).item() - slow_orthogonality(fx)) < 1e-10
    assert abs(correlation_ranking_loss(scores, labels).item() - slow_ranking(scores, labels)) < 1e-10


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("alpha, ortho_weight", [(1.0, 0.5), (2.5, 0.0), (0.1, 3.0)])
def test_c2ae_loss_matches_slow_loop(seed, alpha, ortho_weight):
    fx, fe, scores, labels = random_case(seed)
    got = c2ae_loss(fx, fe, scores, labels, alpha=alpha, ortho_weight=ortho_weight)
    want = (
        slow_alignment(fx, fe)
        + alpha * slow_ranking(scores, labels)
        + ortho_weight * (slow_orthogonality(fx) + slow_orthogonality(fe))
    )
    assert got.dtype == torch.float64
    assert abs(got.item() - want) < 1e-10


def test_c2ae_loss_defaults_are_alpha_1_and_ortho_weight_one_half():
    fx, fe, scores, labels = random_case(1)
    want = slow_alignment(fx, fe) + slow_ranking(scores, labels) + 0.5 * (slow_orthogonality(fx) + slow_orthogonality(fe))
    assert abs(c2ae_loss(fx, fe, scores, labels).item() - want) < 1e-10


def test_orthonormal_batch_has_zero_penalty():
    q, _ = torch.linalg.qr(torch.randn(8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    assert orthogonality_penalty(q * math.sqrt(8)).item() < 1e-24  # zᵀz/B = I


def test_gradients_flow_with_degenerate_rows():
    fx, fe, scores, labels = random_case(1)
    scores[0, 0] = 1e4  # in a row without pairs: exp would overflow if it were not masked out
    scores[1, 2] = -1e4
    for t in (fx, fe, scores):
        t.requires_grad_(True)
    loss = c2ae_loss(fx, fe, scores, labels)
    loss.backward()
    assert torch.isfinite(loss)
    for t in (fx, fe, scores):
        assert torch.isfinite(t.grad).all()
    assert torch.equal(scores.grad[:2], torch.zeros_like(scores.grad[:2]))  # no pair, no gradient
    assert scores.grad[2:].abs().sum() > 0


def test_no_pair_in_batch_is_zero_and_in_graph():
    _, _, scores, _ = random_case(2)
    scores.requires_grad_(True)
    labels = torch.zeros_like(scores)
    labels[::2] = 1.0  # every row all-positive or all-negative
    loss = correlation_ranking_loss(scores, labels)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(scores.grad, torch.zeros_like(scores))


def test_identical_embeddings_give_finite_gradient():
    fx = torch.zeros(4, 3, requires_grad=True)
    fe = torch.zeros(4, 3, requires_grad=True)
    latent_alignment_loss(fx, fe).backward()
    assert torch.isfinite(fx.grad).all() and torch.isfinite(fe.grad).all()


def test_ranking_gradient_matches_finite_differences():
    _, _, scores, labels = random_case(3, batch=4, num_labels=4)
    scores.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: correlation_ranking_loss(s, labels), (scores,))


def test_errors_name_expected_and_got():
    fx, fe, scores, labels = random_case(0)
    with pytest.raises(ValueError, match=r"fx: expected shape \(6, 3\).*got \(6, 2\)"):
        latent_alignment_loss(fx[:, :2], fe)
    with pytest.raises(ValueError, match=r"scores: expected shape \(6, 5\).*got \(6, 4\)"):
        correlation_ranking_loss(scores[:, :4], labels)
    with pytest.raises(ValueError, match=r"z: expected shape \(B, D\), got \(6,\)"):
        orthogonality_penalty(fx[:, 0])
    with pytest.raises(ValueError, match=r"scores: expected batch 6 like fx, got 4$"):
        c2ae_loss(fx, fe, scores[:4], labels[:4])
