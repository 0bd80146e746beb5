"""Multi-label center loss against a slow loop written straight from Wen et al. (ECCV 2016), Eq. 2."""

import pytest
import torch

from retdm.losses.center import CenterLossCenters, multilabel_center_loss


def slow_center(features, labels, centers):
    """Loops over images, positive labels and coordinates, in float64."""
    total = 0.0
    batch, num_labels = labels.shape
    for i in range(batch):
        positives = [l for l in range(num_labels) if labels[i, l]]
        if not positives:
            continue  # no positive label: contributes 0
        row = 0.0
        for l in positives:
            row += 0.5 * sum((float(f) - float(c)) ** 2 for f, c in zip(features[i], centers[l]))
        total += row / len(positives)
    return total / batch


def random_case(seed, batch=6, num_labels=5, dim=4):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, dim, generator=g, dtype=torch.float64)
    centers = torch.randn(num_labels, dim, generator=g, dtype=torch.float64)
    labels = (torch.rand(batch, num_labels, generator=g) > 0.5).double()
    labels[0] = 1.0  # all-positive row
    labels[1] = 0.0  # all-negative row
    return features, labels, centers


@pytest.mark.parametrize("seed", range(8))
def test_matches_slow_loop(seed):
    features, labels, centers = random_case(seed)
    got = multilabel_center_loss(features, labels, centers)
    assert got.dtype == torch.float64
    assert abs(got.item() - slow_center(features, labels, centers)) < 1e-10


def test_single_label_is_the_papers_loss_over_b():
    # One positive per image: ½ Σ_i ||x_i − c_{y_i}||² / B, Eq. 2 with the Caffe layer's 1/B.
    features, _, centers = random_case(4)
    y = torch.tensor([0, 3, 1, 1, 4, 2])
    labels = torch.nn.functional.one_hot(y, 5).double()
    want = 0.5 * ((features - centers[y]) ** 2).sum() / 6
    assert abs(multilabel_center_loss(features, labels, centers).item() - want.item()) < 1e-12


def test_gradients_flow_and_match_the_sgd_step():
    features, labels, centers = random_case(2)
    features.requires_grad_(True)
    centers.requires_grad_(True)
    multilabel_center_loss(features, labels, centers).backward()
    assert torch.isfinite(features.grad).all() and torch.isfinite(centers.grad).all()
    assert torch.equal(features.grad[1], torch.zeros(4, dtype=torch.float64))  # no positive label
    batch = features.shape[0]
    num_pos = labels.sum(1).clamp(min=1)
    for l in range(centers.shape[0]):  # ∂L/∂c_l = (1/B) Σ_i [l ∈ P_i] (c_l − f_i) / |P_i|
        want = sum(labels[i, l] * (centers[l] - features[i]) / num_pos[i] for i in range(batch)) / batch
        assert torch.allclose(centers.grad[l], want.detach(), atol=1e-12, rtol=0)


def test_no_positive_in_batch_is_zero_and_in_graph():
    features, _, centers = random_case(3)
    features.requires_grad_(True)
    labels = torch.zeros(6, 5, dtype=torch.float64)
    loss = multilabel_center_loss(features, labels, centers)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(features.grad, torch.zeros_like(features))


def test_feature_on_its_center_gives_finite_gradient():
    centers = torch.zeros(3, 2, requires_grad=True)
    features = torch.zeros(2, 2, requires_grad=True)
    labels = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    multilabel_center_loss(features, labels, centers).backward()
    assert torch.isfinite(features.grad).all() and torch.isfinite(centers.grad).all()


def test_centers_module_is_seeded_and_learnable():
    a, b, c = CenterLossCenters(5, 4, seed=1), CenterLossCenters(5, 4, seed=1), CenterLossCenters(5, 4, seed=2)
    assert a.centers.shape == (5, 4) and isinstance(a.centers, torch.nn.Parameter)
    assert torch.equal(a.centers, b.centers) and not torch.equal(a.centers, c.centers)
    assert [p is a.centers for p in a.parameters()] == [True]
    features, labels, _ = random_case(0)
    a.double()
    loss = a(features, labels)
    assert abs(loss.item() - slow_center(features, labels, a.centers.detach())) < 1e-10
    loss.backward()
    assert a.centers.grad is not None and a.centers.grad.abs().sum() > 0


def test_errors_name_expected_and_got():
    features, labels, centers = random_case(0)
    with pytest.raises(ValueError, match=r"labels: expected shape \(6, 5\).*got \(6, 4\)"):
        multilabel_center_loss(features, labels[:, :4], centers)
    with pytest.raises(ValueError, match=r"features: expected shape \(B, 4\).*got \(6, 3\)"):
        multilabel_center_loss(features[:, :3], labels, centers)
    with pytest.raises(ValueError, match=r"labels: expected shape \(6, 5\).*got \(5, 5\)"):
        multilabel_center_loss(features, labels[:5], centers)
    with pytest.raises(ValueError, match=r"num_labels, dim: expected ≥ 1, got 0, 4"):
        CenterLossCenters(0, 4)
    with pytest.raises(ValueError, match=r"num_labels, dim: expected ≥ 1, got 3, 0"):
        CenterLossCenters(3, 0)


def test_centers_are_std_times_a_standard_normal_of_the_seed():
    """Default seed 0 and std 1; ``std`` scales the draw; one label and one dimension are allowed."""
    def draw(seed, shape):
        return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(CenterLossCenters(5, 4).centers.detach(), draw(0, (5, 4)))
    assert torch.equal(CenterLossCenters(5, 4, seed=3, std=0.5).centers.detach(), draw(3, (5, 4)) * 0.5)
    assert CenterLossCenters(1, 1).centers.shape == (1, 1)
