"""Label-set neighbours for RETDM's two-way loss (mining only; the loss lives in retdm.losses),
and the image neighbours of the ``retdm_imgnbr`` variant (:func:`image_neighbours`).

For a label set y the neighbours are the K nearest DISTINCT training label sets by Hamming
distance, y itself (distance 0) excluded (DESIGN.md §1). Ties are broken by the lower index in
``sets`` (their lexicographic order), i.e. by the integer key ``distance * S + index``; fewer
than K other sets leave masked slots instead of repeats. Way 2 draws an image from the pool of
training items carrying a neighbour set; ``EmbeddingBank`` keeps their embeddings ("bank" mode).

Search: Hamming(a, b) = |a| + |b| - 2 a·b, so one matmul of augmented rows [a, |a|, 1] and
[-2S b, S, |b| S + j] yields the key itself, exact in float32 while (2M+1) S <= 2^24 (else
float64). A dense S x S search takes ~10 s at MS-COCO size (S ~ 34,000), so a filtered pass
goes first: a pair within distance R shares t = ceil((|a| + |b| - R) / 2) labels, hence (prefix
filtering) each side holds a shared label among its |.| - t + 1 rarest. Blocks (label, |a|, |b|)
of such rows and columns hold ~6 % of the S^2 pairs; rows whose K-th key lies within R are then
exact, the others (~6 % at R = 3) go through the dense search. Total ~2.5 s on 2 cores.

Legend: B batch, M labels, D embedding width, K neighbours, S distinct sets, N items,
Q query label vectors, E (item, label) entries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from retdm.distances import pairwise_euclidean_distance
from retdm.errors import ConfigError, DataError
from retdm.hardware import torch_threads

TIE_BREAK = ("equal Hamming distance -> lower index in `sets` (lexicographic order of the label "
             "vector) first")
RADIUS = 3                 # filtered-pass radius: ~94 % of MS-COCO-like sets finish within it
_BLOCK_KEYS = 1 << 22      # default keys per matmul block (16 MiB of float32)
_STEPS = 2                 # padding buckets per doubling of a block side (waste <= 2x)


@dataclass(frozen=True, eq=False)  # eq=False: comparing array fields with == is ambiguous
class LabelNeighbours:
    """Neighbour table of the distinct training label sets, and the item pools of each set."""

    sets: np.ndarray          # (S, M) uint8, lexicographic (np.unique(axis=0)) order
    set_of_item: np.ndarray   # (N,) int64 index into `sets`
    index: np.ndarray         # (S, K) int64 neighbour set indices, 0 where masked
    mask: np.ndarray          # (S, K) bool, False = fewer than K other distinct sets
    distance: np.ndarray      # (S, K) int32 Hamming distances, 0 where masked
    pool_offsets: np.ndarray  # (S+1,) int64 CSR offsets into pool_items
    pool_items: np.ndarray    # (N,) int64 items grouped by set, ascending within a set
    tied_sets: int            # sets whose K-th distance recurs just beyond the K-th place
    tie_break: str = TIE_BREAK


def _as_labels(labels, name: str, width: int | None = None) -> np.ndarray:
    """Validate a 2-D 0/1 label matrix and return it as (rows, M) uint8."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels)
    expected = f"(rows, {width if width is not None else 'M >= 1'})"
    if arr.ndim != 2 or arr.shape[1] == 0 or (width is not None and arr.shape[1] != width):
        raise DataError(f"{name} must be a 2-D 0/1 matrix of shape {expected}, "
                        f"got shape {arr.shape}")
    if arr.dtype != np.bool_:
        bad = (arr != 0) & (arr != 1)  # (rows, M); NaN counts as bad too
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise DataError(f"{name} must hold only 0 and 1; found {arr[r, c].item()!r} "
                            f"at row {r}, column {c}")
    return arr.astype(np.uint8)


def _check_int(value, name: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")


def _prefix_entries(labels: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted keys ``(|y| * M + label) * (M + 1) + rarity rank`` of every (item, label) entry.

    Returns:
        keys (E,) int64 ascending, items (E,) int64; items ascend within an equal key.
    """
    m = labels.shape[1]
    ranked = labels[:, order]                          # (Q, M) columns rarest first
    rank = np.cumsum(ranked, axis=1, dtype=np.int64)   # (Q, M) 1-based rank where present
    item, pos = np.nonzero(ranked)                     # (E,), (E,)
    keys = (rank[item, -1] * m + order[pos]) * (m + 1) + rank[item, pos]  # (E,)
    sort = np.argsort(keys, kind="stable")
    return keys[sort], item[sort].astype(np.int64)


def _candidate_blocks(queries: np.ndarray, sets: np.ndarray, radius: int):
    """Yield (rows, cols) index blocks that together hold every pair within Hamming ``radius``.

    A pair with cardinalities (ci, cj) and distance <= radius shares t = ceil((ci+cj-radius)/2)
    labels, so each side holds a shared label among its (card - t + 1) rarest (prefix filter).
    """
    m = queries.shape[1]
    order = np.argsort(sets.sum(0), kind="stable")  # global rarity order, rarest first
    (qkey, qitem), (skey, sitem) = _prefix_entries(queries, order), _prefix_entries(sets, order)
    qc, sc = queries.sum(1, dtype=np.int64), sets.sum(1, dtype=np.int64)  # (Q,), (S,)
    qby, sby = np.argsort(qc, kind="stable"), np.argsort(sc, kind="stable")  # (Q,), (S,)
    qsorted, ssorted, lab = qc[qby], sc[sby], np.arange(m)
    for ci in np.unique(qc):
        for cj in np.intersect1d(np.arange(max(0, ci - radius), ci + radius + 1), ssorted):
            t = -(-(ci + cj - radius) // 2)  # labels a pair within `radius` must share
            if t <= 0:  # small sets: every set of cardinality cj is a candidate
                yield (qby[np.searchsorted(qsorted, ci):np.searchsorted(qsorted, ci, "right")],
                       sby[np.searchsorted(ssorted, cj):np.searchsorted(ssorted, cj, "right")])
            elif t <= min(ci, cj):
                # items holding label l among their (card - t + 1) rarest form a contiguous range
                qlo = np.searchsorted(qkey, (ci * m + lab) * (m + 1) + 1)                    # (M,)
                qhi = np.searchsorted(qkey, (ci * m + lab) * (m + 1) + ci - t + 1, "right")  # (M,)
                slo = np.searchsorted(skey, (cj * m + lab) * (m + 1) + 1)                    # (M,)
                shi = np.searchsorted(skey, (cj * m + lab) * (m + 1) + cj - t + 1, "right")  # (M,)
                for l in np.nonzero((qhi > qlo) & (shi > slo))[0]:
                    yield qitem[qlo[l]:qhi[l]], sitem[slo[l]:shi[l]]


def _block_top(qa: torch.Tensor, sb: torch.Tensor, blocks, kk: int, budget: int):
    """Yield (rows (R,), keys (R, kk')) int64: each row's smallest keys within its block.

    Blocks are cut into row pieces of at most ``budget`` keys, and pieces of similar shape (sides
    within a factor sqrt 2) are padded into one bmm: ~4,000 blocks at MS-COCO size would
    otherwise pay a torch dispatch each for ~10 ops. Padded rows repeat a real row (dropped),
    padded columns point at the pad row of ``sb``, whose key is ``none``.
    """
    s, none = len(sb) - 1, float(sb[-1, -1])  # sb's last row is the padding column (key `none`)
    groups: dict[tuple[int, int], list] = {}
    for rows, cols in blocks:
        step = max(1, budget // len(cols))
        for start in range(0, len(rows), step):
            piece = rows[start:start + step]
            shape = tuple(int(np.ceil(_STEPS * np.log2(n))) for n in (len(piece), len(cols)))
            groups.setdefault(shape, []).append((piece, cols))
    for pieces in groups.values():
        rp, cp = max(len(r) for r, _ in pieces), max(len(c) for _, c in pieces)
        per = max(1, budget // (rp * cp))
        for first in range(0, len(pieces), per):
            batch = pieces[first:first + per]
            ridx = np.empty((len(batch), rp), np.int64)   # (nb, rp), padded with a real row
            cidx = np.full((len(batch), cp), s, np.int64)  # (nb, cp), padded with the pad column
            for b, (r, c) in enumerate(batch):
                ridx[b], cidx[b, :len(c)] = r[np.minimum(np.arange(rp), len(r) - 1)], c
            ridx_t = torch.from_numpy(ridx)
            key = torch.bmm(qa[ridx_t], sb[torch.from_numpy(cidx)].transpose(1, 2))  # (nb, rp, cp)
            key.masked_fill_(key < s, none)  # key < S <=> identical set: never a neighbour
            val = torch.topk(key, min(kk, cp), dim=2, largest=False).values  # (nb, rp, kk')
            real = torch.arange(rp)[None, :] < torch.tensor([len(r) for r, _ in batch])[:, None]
            yield ridx_t[real], val[real].to(torch.int64)  # (R,), (R, kk')


# One thread: measured on the 2 shared cores at MS-COCO size, while another process kept both
# busy, the search took 10-16 s on two threads against 2.4 s on one. Its result never depends on it.
@torch_threads(1)
def _nearest_keys(queries: np.ndarray, sets: np.ndarray, k: int, radius: int | None,
                  chunk_size: int | None) -> torch.Tensor:
    """(Q, K+1) int64 smallest keys ``distance * S + j`` over sets j != query; (M+1) S = none."""
    (q, m), s = queries.shape, len(sets)
    kk, none = k + 1, (m + 1) * s
    # Partial sums of the key matmul lie in [-2MS, (2M+1)S]: exact in float32 below 2^24.
    exact32 = (2 * m + 1) * s <= 1 << 24 and torch.get_float32_matmul_precision() == "highest"
    dtype = torch.float32 if exact32 else torch.float64
    qc = torch.from_numpy(queries.sum(1, dtype=np.int64))  # (Q,)
    sc = torch.from_numpy(sets.sum(1, dtype=np.int64))     # (S,)
    qa = torch.cat([torch.from_numpy(queries).to(dtype), qc[:, None].to(dtype),
                    torch.ones(q, 1, dtype=dtype)], 1)      # (Q, M+2)
    pad = torch.zeros(1, m + 2, dtype=dtype)
    pad[0, -1] = none                                       # a column whose key is `none`
    sb = torch.cat([torch.from_numpy(sets).to(dtype) * (-2 * s), torch.full((s, 1), s, dtype=dtype),
                    (sc * s + torch.arange(s))[:, None].to(dtype)], 1)  # (S, M+2)
    sb = torch.cat([sb, pad])                                            # (S+1, M+2)
    budget = _BLOCK_KEYS if chunk_size is None else chunk_size * s

    table = torch.full((q, kk), none, dtype=torch.int64)  # (Q, K+1)
    pending = np.arange(q)
    if radius is not None and q:
        blocks = _candidate_blocks(queries, sets, radius)
        found = [(r[:, None] * none + v)[v < none]  # (row, key) pairs, missing ones dropped
                 for r, v in _block_top(qa, sb, blocks, kk, budget)]
        if found:  # merge: a pair met in several blocks must count once
            pair = torch.unique(torch.cat(found))  # (P,) sorted by (row, key), duplicates gone
            row, key = pair // none, pair % none
            rank = torch.arange(len(pair)) - torch.searchsorted(row, row)  # place within its row
            keep = rank < kk
            table[row[keep], rank[keep]] = key[keep]
        # K-th neighbour within the radius: every pair within it was searched, none missed
        done = (table[:, k - 1] < none) & (table[:, k - 1] // s <= radius)
        pending = torch.nonzero(~done).flatten().numpy()
    if len(pending):  # the rest: dense search against every set
        table[pending] = none
        for r, v in _block_top(qa, sb, [(pending, np.arange(s))], kk, budget):
            table[r, :v.shape[1]] = v
    # Guard against a matmul that silently lost exactness (e.g. reduced-precision CPU kernels).
    ok = (table < none).numpy()
    exact = np.count_nonzero(sets[(table % s).numpy()] != queries[:, None, :], axis=2)  # (Q, K+1)
    if (exact != (table // s).numpy())[ok].any():
        raise RuntimeError("neighbour keys are not exact: the float matmul lost precision")
    return table


def _split(table: torch.Tensor, s: int, m: int, k: int):
    """(Q, K+1) keys -> index, mask, distance, each (Q, K), 0 where masked."""
    mask = table[:, :k] < (m + 1) * s
    index = torch.where(mask, table[:, :k] % s, 0)
    distance = torch.where(mask, table[:, :k] // s, 0)
    return index.numpy(), mask.numpy(), distance.numpy().astype(np.int32)


def label_neighbours(train_labels, k: int, *, chunk_size: int | None = None,
                     radius: int | None = RADIUS) -> LabelNeighbours:
    """Mine the K nearest distinct label sets of every distinct training label set.

    Args:
        train_labels: (N, M) 0/1 labels (numpy, torch or nested lists) of the training items.
        k: neighbours per set, >= 1.
        chunk_size: query rows per dense matmul block (a filtered block holds at most
            chunk_size * S keys); default: blocks of about 4 Mi keys (16 MiB).
        radius: Hamming radius of the filtered pass (None: dense only); speed only, same result.

    Returns:
        LabelNeighbours: sets (S, M), set_of_item (N,), index/mask/distance (S, K), pools.
    """
    labels = _as_labels(train_labels, "train_labels")
    _check_int(k, "k", 1)
    if chunk_size is not None:
        _check_int(chunk_size, "chunk_size", 1)
    if radius is not None:
        _check_int(radius, "radius", 0)
    m = labels.shape[1]
    if len(labels) == 0:
        raise DataError(f"train_labels must have at least one row, got shape {labels.shape}")
    # Packed rows compare byte-wise in the same (lexicographic) order as the 0/1 vectors, 6x faster.
    packed, inverse = np.unique(np.packbits(labels, axis=1), axis=0, return_inverse=True)
    sets = np.unpackbits(packed, axis=1, count=m)        # (S, M)
    set_of_item = inverse.reshape(-1).astype(np.int64)   # (N,)
    s = len(sets)
    table = _nearest_keys(sets, sets, k, radius, chunk_size)  # (S, K+1)
    index, mask, distance = _split(table, s, m, k)
    # a tie at the K-th place: the (K+1)-th exists and has the K-th distance
    beyond = table[:, k] < (m + 1) * s                                     # (S,)
    same = (table[:, k] // s == table[:, k - 1] // s) & torch.from_numpy(mask[:, -1])  # (S,)
    tied = int((beyond & same).sum())
    counts = np.bincount(set_of_item, minlength=s)
    return LabelNeighbours(
        sets=sets, set_of_item=set_of_item, index=index, mask=mask, distance=distance,
        pool_offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        pool_items=np.argsort(set_of_item, kind="stable").astype(np.int64), tied_sets=tied)


def query_neighbours(neigh: LabelNeighbours, labels, *, radius: int | None = RADIUS):
    """K nearest training sets of arbitrary label vectors (e.g. the validation part).

    Args:
        neigh: the training table.
        labels: (Q, M) 0/1 label vectors; a vector equal to a training set excludes that set only.
        radius: as in ``label_neighbours``.

    Returns:
        (Q, K) int64 indices into ``neigh.sets`` (0 where masked) and the (Q, K) bool mask.
    """
    s, m = neigh.sets.shape
    queries = _as_labels(labels, "labels", width=m)
    table = _nearest_keys(queries, neigh.sets, neigh.index.shape[1], radius, None)
    index, mask, _ = _split(table, s, m, neigh.index.shape[1])
    return index, mask


def sample_pool_items(neigh: LabelNeighbours, set_index,
                      draws: torch.Tensor) -> torch.Tensor:
    """Draw, for every set index, one training item uniformly from that set's pool.

    Args:
        neigh: the training table.
        set_index: (B, K) (any shape) set indices, tensor or array; masked slots may hold 0.
        draws: uniform numbers in [0, 1) of set_index's shape, drawn beforehand (training draws
            them per item and epoch, so that an item gets the same pool images in whichever
            process it lands); the same draws give the same items.

    Returns:
        int64 item indices of set_index's shape, on set_index's device.
    """
    device = set_index.device if isinstance(set_index, torch.Tensor) else torch.device("cpu")
    idx = torch.as_tensor(set_index).to("cpu", torch.int64)
    s = len(neigh.sets)
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= s):
        raise ValueError(f"set indices must lie in [0, {s}), got range "
                         f"[{int(idx.min())}, {int(idx.max())}]")
    offsets = torch.from_numpy(neigh.pool_offsets)
    start, size = offsets[idx], offsets[idx + 1] - offsets[idx]      # (B, K) each
    u = torch.as_tensor(draws, dtype=torch.float64).cpu().reshape(idx.shape)  # (B, K)
    # u * size rounds up to size for u just below 1: clamp to the pool's last item
    pick = start + torch.minimum((u * size).to(torch.int64), size - 1)  # (B, K)
    return torch.from_numpy(neigh.pool_items)[pick].to(device)


@torch.no_grad()
def image_neighbours(queries: torch.Tensor, keys: torch.Tensor, query_labels: torch.Tensor,
                     key_labels: torch.Tensor, k: int, *, exclude_self: bool,
                     chunk_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """The K nearest keys of every query by the paper's d(·,·) between image embeddings f_I.

    The paper's future work (§V): "input image's k nearest neighbors and their corresponding
    target labels". A key carrying the query's own label set is no negative of it: its slot is
    masked (the slot stays, so every row keeps K). Ties go to the lower key index (the stable
    sort of the distances).

    Args:
        queries: (Q, D) embeddings.
        keys: (N, D) embeddings of the fit items (the only items a neighbour may be).
        query_labels: (Q, M) 0/1 labels of the queries.
        key_labels: (N, M) 0/1 labels of the keys.
        k: neighbours per query, 1 <= K < N.
        exclude_self: queries are the keys themselves (query i is key i), which are left out.
        chunk_size: query rows per distance block ((chunk, N) floats at a time).

    Returns:
        (Q, K) int64 key indices and the (Q, K) bool mask, False where the key's labels equal the query's.
    """
    _check_int(k, "k", 1)
    n = len(keys)
    if k >= n:
        raise ConfigError(f"loss.image_k = {k} image neighbours need more than {k} fit items, got {n}")
    if exclude_self and len(queries) != n:
        raise ValueError(f"exclude_self: queries must be the {n} keys, got {len(queries)} rows")
    keys = keys.float()
    index = torch.empty(len(queries), k, dtype=torch.int64)  # (Q, K)
    for start in range(0, len(queries), chunk_size):
        d = pairwise_euclidean_distance(queries[start:start + chunk_size].float(), keys)  # (C, N)
        if exclude_self:
            rows = torch.arange(len(d))
            d[rows, rows + start] = math.inf
        index[start:start + len(d)] = torch.sort(d, dim=1, stable=True).indices[:, :k]
    mask = (key_labels[index] != query_labels[:, None, :]).any(dim=2)  # (Q, K)
    return index, mask


class EmbeddingBank:
    """(N, D) float32 memory of training-image embeddings for way 2 ("bank" mode).

    Rows are refreshed as batches pass; in stage 2 the CNN is frozen, so the bank is exact there.
    """

    def __init__(self, num_items: int, dim: int, device=None) -> None:
        _check_int(num_items, "num_items", 1)
        _check_int(dim, "dim", 1)
        self.memory = torch.zeros(num_items, dim, dtype=torch.float32, device=device)  # (N, D)
        self.filled = torch.zeros(num_items, dtype=torch.bool, device=device)          # (N,)

    @torch.no_grad()
    def update(self, items: torch.Tensor, embeddings: torch.Tensor) -> None:
        """Store embeddings.detach() (B, D) at rows items (B,); a repeated item keeps one."""
        items = torch.as_tensor(items, device=self.memory.device).long().flatten()  # (B,)
        if embeddings.shape != (len(items), self.memory.shape[1]):
            raise ValueError(f"embeddings must have shape ({len(items)}, {self.memory.shape[1]}), "
                             f"got {tuple(embeddings.shape)}")
        self.memory[items] = embeddings.detach().to(self.memory)
        self.filled[items] = True

    @torch.no_grad()
    def lookup(self, items: torch.Tensor) -> torch.Tensor:
        """(...,) item indices -> (..., D) stored embeddings (no grad); unfilled rows raise."""
        items = torch.as_tensor(items, device=self.memory.device).long()
        missing = ~self.filled[items]
        if missing.any():
            raise RuntimeError(f"EmbeddingBank.lookup: {int(missing.sum())} of {items.numel()} "
                               f"looked-up rows were never written ({int((~self.filled).sum())} of "
                               f"{len(self.filled)} bank rows empty); fill the bank first")
        return self.memory[items]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"memory": self.memory.clone(), "filled": self.filled.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        memory, filled = state["memory"], state["filled"]
        if memory.shape != self.memory.shape or filled.shape != self.filled.shape:
            raise ValueError(f"bank state has shape {tuple(memory.shape)}, "
                             f"expected {tuple(self.memory.shape)}")
        self.memory.copy_(memory)
        self.filled.copy_(filled)
