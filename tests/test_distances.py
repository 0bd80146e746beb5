"""The one place distances are computed: each against its formula, and finite at a zero difference."""

import torch

from retdm.distances import euclidean_distance, squared_euclidean_distance


def test_squared_distance_is_the_sum_of_squares_and_broadcasts():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 1, 5, generator=g), torch.randn(1, 3, 5, generator=g)
    slow = torch.tensor([[sum((a[i, 0, d] - b[0, j, d]).item() ** 2 for d in range(5)) for j in range(3)]
                         for i in range(4)])  # (4, 3)
    torch.testing.assert_close(squared_euclidean_distance(a, b), slow)
    torch.testing.assert_close(squared_euclidean_distance(a, b), euclidean_distance(a, b) ** 2)


def test_identical_points_give_zero_gradients_not_nan():
    a = torch.ones(2, 3, requires_grad=True)
    for distance in (euclidean_distance, squared_euclidean_distance):
        (grad,) = torch.autograd.grad(distance(a, a.detach().clone()).sum(), a)
        assert torch.equal(grad, torch.zeros(2, 3))
