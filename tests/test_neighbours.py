"""Tests of retdm.neighbours against a brute-force reference written from the definition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retdm.errors import ConfigError
from retdm.neighbours import EmbeddingBank, LabelNeighbours, label_neighbours, query_neighbours, sample_pool_items


def brute_force(labels: np.ndarray, k: int, queries: np.ndarray | None = None):
    """Neighbours straight from the definition: python loops, sorted by (distance, index)."""
    sets = [tuple(row) for row in np.unique(labels, axis=0)]  # lexicographic order
    queries = sets if queries is None else [tuple(row) for row in queries]
    index, mask, distance, tied = [], [], [], 0
    for q in queries:
        ranked = sorted((sum(a != b for a, b in zip(q, other)), j)
                        for j, other in enumerate(sets) if other != q)
        top = ranked[:k]
        index.append([j for _, j in top] + [0] * (k - len(top)))
        distance.append([d for d, _ in top] + [0] * (k - len(top)))
        mask.append([True] * len(top) + [False] * (k - len(top)))
        tied += len(ranked) > k and ranked[k][0] == ranked[k - 1][0]
    return (np.array(sets, dtype=np.uint8).reshape(len(sets), -1), np.array(index).reshape(-1, k),
            np.array(mask).reshape(-1, k), np.array(distance).reshape(-1, k), tied)


def random_labels(seed: int) -> tuple[np.ndarray, int]:
    """Small label matrices with duplicates, ties, skewed density and sometimes < k other sets."""
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 10))
    distinct = (rng.random((int(rng.integers(1, 25)), m)) < rng.uniform(0.05, 0.7)).astype(np.uint8)
    labels = distinct[rng.integers(0, len(distinct), int(rng.integers(1, 60)))]  # duplicates
    return labels, int(rng.integers(1, 8))


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("radius,chunk_size", [(None, None), (0, 1), (1, 3), (3, None), (40, 2)])
def test_matches_brute_force(seed, radius, chunk_size):
    labels, k = random_labels(seed)
    sets, index, mask, distance, tied = brute_force(labels, k)
    nb = label_neighbours(labels, k, radius=radius, chunk_size=chunk_size)
    np.testing.assert_array_equal(nb.sets, sets)
    np.testing.assert_array_equal(nb.sets[nb.set_of_item], labels)
    np.testing.assert_array_equal(nb.index, index)
    np.testing.assert_array_equal(nb.mask, mask)
    np.testing.assert_array_equal(nb.distance, distance)
    assert nb.tied_sets == tied
    assert nb.index.dtype == np.int64 and nb.distance.dtype == np.int32 and nb.mask.dtype == bool


def test_fewer_than_k_other_sets_are_masked():
    labels = np.array([[0, 0], [1, 0], [1, 0], [1, 1]])  # 3 distinct sets, k = 5
    nb = label_neighbours(labels, 5)
    assert nb.mask.sum(1).tolist() == [2, 2, 2]
    assert (nb.index[~nb.mask] == 0).all() and (nb.distance[~nb.mask] == 0).all()
    single = label_neighbours(np.ones((4, 3)), 2)  # one distinct set: nothing at all
    assert not single.mask.any() and single.tied_sets == 0


def test_sparse_sets_filtered_equals_dense():
    """Realistic sparse sets (many filtered blocks, some rows falling back to dense)."""
    rng = np.random.default_rng(7)
    p = 0.25 / np.arange(1, 31)  # skewed label frequencies
    labels = (rng.random((600, 30)) < p).astype(np.uint8)
    labels[rng.random(600) < 0.5, 0] = 1
    dense = label_neighbours(labels, 6, radius=None)
    for radius in (1, 2, 3):
        nb = label_neighbours(labels, 6, radius=radius, chunk_size=7)
        np.testing.assert_array_equal(nb.index, dense.index)
        np.testing.assert_array_equal(nb.distance, dense.distance)
        np.testing.assert_array_equal(nb.mask, dense.mask)
        assert nb.tied_sets == dense.tied_sets
    _, index, mask, distance, tied = brute_force(labels, 6)
    np.testing.assert_array_equal(dense.index, index)
    assert dense.tied_sets == tied


def test_float64_path_when_float32_is_not_exact(monkeypatch):
    labels, k = random_labels(3)
    expected = label_neighbours(labels, k)
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "medium")
    nb = label_neighbours(labels, k)
    np.testing.assert_array_equal(nb.index, expected.index)
    np.testing.assert_array_equal(nb.distance, expected.distance)


def test_never_its_own_neighbour():
    labels, _ = random_labels(5)
    nb = label_neighbours(labels, 4)
    own = np.arange(len(nb.sets))[:, None]
    assert not (nb.mask & (nb.index == own)).any()
    assert (nb.distance[nb.mask] >= 1).all()
    hamming = (nb.sets[nb.index] != nb.sets[:, None, :]).sum(2)  # (S, K)
    np.testing.assert_array_equal(hamming[nb.mask], nb.distance[nb.mask])


def test_tied_sets_hand_made():
    # sets in lexicographic order: 0=001, 1=010, 2=100, 3=110
    labels = np.array([[1, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    nb = label_neighbours(labels, 1)
    # 001: 010 and 100 both at 2 (tie); 010: 110 at 1; 100: 110 at 1; 110: 010 and 100 at 1 (tie)
    assert nb.index[:, 0].tolist() == [1, 3, 3, 1]
    assert nb.distance[:, 0].tolist() == [2, 1, 1, 1]
    assert nb.tied_sets == 2
    nb2 = label_neighbours(labels, 2)
    # k=2: 010 -> [110, 001] with 100 also at 2 (tie); 100 -> [110, 001] with 010 at 2 (tie)
    assert nb2.index.tolist() == [[1, 2], [3, 0], [3, 0], [1, 2]]
    assert nb2.tied_sets == 2
    assert "lower index" in nb.tie_break


def test_pools_hold_every_item_once_in_its_own_set():
    labels, _ = random_labels(9)
    nb = label_neighbours(labels, 3)
    assert sorted(nb.pool_items.tolist()) == list(range(len(labels)))
    assert nb.pool_offsets[0] == 0 and nb.pool_offsets[-1] == len(labels)
    for s in range(len(nb.sets)):
        pool = nb.pool_items[nb.pool_offsets[s]:nb.pool_offsets[s + 1]]
        assert len(pool) > 0 and (np.diff(pool) > 0).all()
        assert (nb.set_of_item[pool] == s).all()
        assert (labels[pool] == nb.sets[s]).all()


def test_sample_pool_items_carry_the_neighbour_set_and_are_deterministic():
    rng = np.random.default_rng(0)
    labels = (rng.random((300, 5)) < 0.3).astype(np.uint8)
    nb = label_neighbours(labels, 4)
    set_index = torch.from_numpy(nb.index[nb.set_of_item[:64]])  # (B, K)
    draws = torch.rand(set_index.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    items = sample_pool_items(nb, set_index, draws)
    assert items.shape == set_index.shape and items.dtype == torch.int64
    np.testing.assert_array_equal(labels[items.numpy()], nb.sets[set_index.numpy()])
    again = sample_pool_items(nb, set_index.numpy(), draws.clone())
    assert torch.equal(items, again)
    # uniform over the pool: a big pool gets more than one distinct item drawn
    big = int(np.argmax(np.diff(nb.pool_offsets)))
    many = sample_pool_items(nb, torch.full((200,), big), torch.rand(200, generator=torch.Generator().manual_seed(0)))
    assert len(set(many.tolist())) > 1
    with pytest.raises(ValueError, match="set indices"):
        sample_pool_items(nb, torch.tensor([len(nb.sets)]), torch.rand(1))


def test_sample_pool_items_picks_floor_of_draw_times_pool_size_for_any_index_and_draw_dtype():
    """Item ``floor(u · size)`` of the pool, u read exactly: the float32 draw just below 5/11 picks
    item 4 of a pool of 11 (its float32 product rounds up to 5). Indices of any integer dtype."""
    labels = np.array([[1, 0]] * 11 + [[0, 1], [1, 1]], dtype=np.uint8)
    nb = label_neighbours(labels, 1)
    assert nb.sets[1].tolist() == [1, 0] and np.diff(nb.pool_offsets).tolist() == [1, 11, 1]
    u = torch.tensor([0.45454543828964233], dtype=torch.float32)
    assert int(u * 11) == 5 and int(u.double() * 11) == 4
    assert sample_pool_items(nb, torch.tensor([1]), u).tolist() == [4]
    draws = torch.tensor([[0.0, 0.999999], [0.5, 0.95]], dtype=torch.float64)
    want = [[11, 12], [5, 10]]  # pools of sets 0, 1, 2: [11], [0 … 10], [12]
    for index in (np.array([[0, 2], [1, 1]], dtype=np.int16), torch.tensor([[0, 2], [1, 1]], dtype=torch.int32)):
        assert sample_pool_items(nb, index, draws).tolist() == want


def test_query_neighbours():
    labels, k = random_labels(4)
    nb = label_neighbours(labels, k)
    index, mask = query_neighbours(nb, labels)
    np.testing.assert_array_equal(index, nb.index[nb.set_of_item])
    np.testing.assert_array_equal(mask, nb.mask[nb.set_of_item])

    rng = np.random.default_rng(1)
    labels = (rng.random((200, 12)) < 0.2).astype(np.uint8)
    nb = label_neighbours(labels, 5)
    queries = (rng.random((40, 12)) < 0.3).astype(np.uint8)
    queries[0] = 0                        # the empty set
    queries[1] = labels[0]                # identical to a training set: that set is excluded
    _, ref_index, ref_mask, _, _ = brute_force(labels, 5, queries)
    for radius in (None, 3):
        index, mask = query_neighbours(nb, queries, radius=radius)
        np.testing.assert_array_equal(index, ref_index)
        np.testing.assert_array_equal(mask, ref_mask)
    empty_index, empty_mask = query_neighbours(nb, np.zeros((0, 12)))
    assert empty_index.shape == (0, 5) and empty_mask.shape == (0, 5)


def test_unseen_set_keeps_its_distance_one_neighbours():
    labels = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 1]])
    nb = label_neighbours(labels, 2)
    index, mask = query_neighbours(nb, np.array([[1, 1, 0]]))  # unseen: all three at distance 1
    assert index.tolist() == [[0, 1]] and mask.all()


@pytest.mark.parametrize("bad,match", [
    (np.zeros(5), r"shape \(5,\)"),
    (np.zeros((3, 0)), r"shape \(3, 0\)"),
    (np.array([[0, 2], [1, 0]]), "found 2 at row 0, column 1"),
    (np.array([[0.5, 1.0]]), "found 0.5"),
    (np.array([[np.nan, 1.0]]), "found nan"),
])
def test_bad_labels_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        label_neighbours(bad, 2)


def test_bad_arguments_raise():
    labels = np.eye(3)
    for k in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="k must be an integer"):
            label_neighbours(labels, k)
    with pytest.raises(ValueError, match="chunk_size"):
        label_neighbours(labels, 1, chunk_size=0)
    with pytest.raises(ValueError, match="at least one row"):
        label_neighbours(np.zeros((0, 3)), 1)
    nb = label_neighbours(labels, 1)
    with pytest.raises(ValueError, match=r"\(rows, 3\).*\(2, 4\)"):
        query_neighbours(nb, np.zeros((2, 4)))
    assert isinstance(nb, LabelNeighbours)
    label_neighbours(torch.eye(3), 1)  # tensors are accepted
    label_neighbours(np.eye(3, dtype=bool), 1)


def test_embedding_bank_sizes_are_checked_by_name():
    assert EmbeddingBank(1, 1).memory.shape == (1, 1)
    with pytest.raises(ValueError, match=r"^num_items must be an integer >= 1, got 0$"):
        EmbeddingBank(0, 3)
    with pytest.raises(ValueError, match=r"^dim must be an integer >= 1, got 0$"):
        EmbeddingBank(3, 0)


def test_embedding_bank_round_trip():
    bank = EmbeddingBank(6, 3)
    emb = torch.randn(2, 3, requires_grad=True)
    bank.update(torch.tensor([4, 1]), emb * 2)
    assert bank.filled.tolist() == [False, True, False, False, True, False]
    out = bank.lookup(torch.tensor([[1, 4], [4, 4]]))  # (2, 2, D)
    assert out.shape == (2, 2, 3) and not out.requires_grad and out.grad_fn is None
    torch.testing.assert_close(out[0], (emb * 2).detach()[[1, 0]])
    assert bank.memory.grad_fn is None
    with pytest.raises(RuntimeError, match="2 of 3 looked-up rows were never written"):
        bank.lookup(torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="embeddings must have shape"):
        bank.update(torch.tensor([0]), torch.zeros(1, 4))

    other = EmbeddingBank(6, 3)
    other.load_state_dict(bank.state_dict())
    assert torch.equal(other.memory, bank.memory) and torch.equal(other.filled, bank.filled)
    state = bank.state_dict()
    state["memory"].zero_()  # a copy: editing it leaves the bank alone
    assert bank.memory.abs().sum() > 0
    with pytest.raises(ValueError, match=r"bank state has shape \(6, 3\), expected \(5, 3\)"):
        EmbeddingBank(5, 3).load_state_dict(bank.state_dict())
    with pytest.raises(ValueError, match="bank state has shape"):  # memory fits, the filled flags do not
        other.load_state_dict({"memory": bank.memory, "filled": bank.filled[:5]})


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("radius", [0, 1, 2, 3, 5])
def test_candidate_blocks_hold_every_pair_within_the_radius_and_only_prefix_filter_pairs(seed, radius):
    """The filtered pass's pruning (``_candidate_blocks``): complete, and no looser than its filter.

    A pair of cardinalities (ci, cj) within Hamming ``radius`` shares t = ceil((ci + cj - radius) / 2)
    labels, so both hold a shared label among their (card - t + 1) rarest (t <= 0: any pair qualifies).
    """
    from retdm.neighbours import _candidate_blocks

    rng = np.random.default_rng(seed)
    m = int(rng.integers(4, 13))
    sets = np.unique((rng.random((int(rng.integers(20, 120)), m)) < rng.uniform(0.1, 0.6)).astype(np.uint8), axis=0)
    queries = sets[rng.permutation(len(sets))[: max(1, len(sets) // 2)]]
    rank = np.empty(m, np.int64)
    rank[np.argsort(sets.sum(0), kind="stable")] = np.arange(m)  # the rarity order, rarest first
    yielded = set()
    for rows, cols in _candidate_blocks(queries, sets, radius):
        for i in rows:
            for j in cols:
                q, s = queries[i], sets[j]
                ci, cj = int(q.sum()), int(s.sum())
                t = -(-(ci + cj - radius) // 2)
                assert abs(ci - cj) <= radius, (ci, cj)
                if t > 0:
                    prefix_q, prefix_s = rank[q == 1] <= np.sort(rank[q == 1])[ci - t], \
                        rank[s == 1] <= np.sort(rank[s == 1])[cj - t]
                    shared_q = set(np.flatnonzero(q)[prefix_q]) & set(np.flatnonzero(s)[prefix_s])
                    assert shared_q, f"pair {q} {s} shares no label within both prefixes (t = {t})"
                yielded.add((int(i), int(j)))
    within = {(i, j) for i in range(len(queries)) for j in range(len(sets))
              if int((queries[i] != sets[j]).sum()) <= radius}
    assert within <= yielded, f"missed {sorted(within - yielded)[:5]}"


def test_image_neighbours_are_the_nearest_fit_images_by_distance_with_ties_to_the_lower_index():
    from retdm.neighbours import image_neighbours

    g = torch.Generator().manual_seed(0)
    keys = torch.randn(30, 4, generator=g)
    keys[7] = keys[3]  # a tie: key 3 comes first for every query
    labels = (torch.rand(30, 5, generator=g) > 0.6).float()
    keys[12], labels[12] = keys[0] + 0.01, labels[0]  # query 0's nearest carries its own labels: masked, kept
    index, mask = image_neighbours(keys, keys, labels, labels, 6, exclude_self=True, chunk_size=7)
    d = torch.cdist(keys.double(), keys.double()).fill_diagonal_(float("inf"))
    for q in range(30):
        order = sorted(range(30), key=lambda j: (float(d[q, j]), j))[:6]
        assert index[q].tolist() == order, q
        assert q not in order
    assert (mask == (labels[index] != labels[:, None]).any(2)).all()
    assert index[0, 0] == 12 and not mask[0, 0] and mask[0, 1:].any()
    both = [q for q in range(30) if 3 in index[q] and 7 in index[q]]
    assert both and all(index[q].tolist().index(3) < index[q].tolist().index(7) for q in both)
    val = torch.randn(5, 4, generator=g)
    val_index, _ = image_neighbours(val, keys, labels[:5], labels, 3, exclude_self=False)
    assert val_index.tolist() == torch.sort(torch.cdist(val, keys), dim=1, stable=True).indices[:, :3].tolist()


def test_image_neighbours_need_more_fit_images_than_k():
    from retdm.neighbours import image_neighbours

    keys, labels = torch.zeros(4, 2), torch.zeros(4, 3)
    with pytest.raises(ConfigError, match=r"loss.image_k = 4 image neighbours need more than 4 fit items, got 4"):
        image_neighbours(keys, keys, labels, labels, 4, exclude_self=True)
