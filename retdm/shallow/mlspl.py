"""MLSPL: self-paced multi-label learning, OUR reimplementation on fixed feature vectors.

RETDM cites MLSPL as its ref. [4] ("Li et al. extended ML-LOC into a self-paced framework"):
C. Li, F. Wei, J. Yan, W. Dong, Q. Liu, X. Zhang, H. Zha, "A Self-Paced Regularization
Framework for Multi-Label Learning", IEEE TNNLS 29(6), 2018 (arXiv:1603.06708). (The title
"Self-paced multi-label learning with diversity" belongs to another paper, Seyedi et al.,
ACML 2019, SPMLD.) MLSPL weighs every (instance, label) loss by a self-paced variable and
admits pairs from easy to hard as the pace parameter grows. No reference code is used.

Legend: N training points, B batch, F features, H hidden units, M labels.

What we optimise, alternating per epoch t = 1..T (the usual SPL alternate search):

    v_il = 1 if ℓ_il < λ_t else 0                       (hard self-paced regulariser −λ Σ v)
    min_θ Σ_il v_il ℓ_il / max(1, Σ_il v_il),  ℓ_il = BCE(σ(f_θ(x_i))_l, y_il)
    λ_1 = the q-quantile of the losses ℓ_il of the initial model (q = 0.5: ~half the pairs),
    λ_{t+1} = growth · λ_t                                (growth = 1.3)

v is recomputed from the current model over the whole training set at the start of each epoch;
θ then takes one Adam pass of mini-batches. ``admission="per_label"`` keeps one threshold per
label (λ_1 = the q-quantile of that label's initial losses), so every label enters the
curriculum with ~q of its pairs: our simple stand-in for a label-diversity term.

Deviations from the paper:

- f_θ is a linear layer (default) or one ReLU hidden layer over standardised features, trained
  by Adam; the paper builds on ML-LOC (a linear model with local correlation codes, solved by
  block-coordinate descent), which we do not reimplement.
- Hard 0/1 weights only; the paper proposes a family of self-paced functions ranking label
  tasks and instances jointly. Its label-task/diversity regulariser is NOT implemented; the
  optional per-label admission above is the documented substitute.
- λ starts from a loss quantile and grows geometrically by a fixed factor for a fixed number
  of epochs, instead of the paper's schedule and stopping rule.
- The output bias starts at the logit of each label's training frequency, so the first
  admission already tells rare positives (hard) from the rest.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from retdm.errors import ConfigError, DataError
from retdm.shallow.base import ShallowEstimator, check_features, check_int, check_labels, check_positive, check_state

ADMISSIONS = ("global", "per_label")
_EVAL_ROWS = 8192  # rows per no-grad pass when all training losses are recomputed


def pair_losses(logits: Tensor, y: Tensor) -> Tensor:
    """ℓ_il = −y_il log σ(f_il) − (1 − y_il) log(1 − σ(f_il)), one per (instance, label) pair.

    Args:
        logits: (B, M) f_θ(x_i).
        y: (B, M) float 0/1 labels.

    Returns:
        (B, M) losses.
    """
    return F.binary_cross_entropy_with_logits(logits, y, reduction="none")


def initial_pace(losses: Tensor, fraction: float, per_label: bool) -> Tensor:
    """λ_1: the ``fraction``-quantile of the initial pair losses, overall or per label.

    Args:
        losses: (N, M) ℓ_il of the initial model.
        fraction: q in (0, 1].
        per_label: one threshold per label instead of one overall.

    Returns:
        (M,) thresholds (all equal when not per label).
    """
    cols = losses if per_label else losses.reshape(-1, 1)  # (N, M) or (N*M, 1)
    rank = min(cols.shape[0], max(1, int(np.ceil(fraction * cols.shape[0]))))  # 1-based order statistic
    pace = cols.kthvalue(rank, dim=0).values  # (M,) or (1,); torch.quantile caps its input size
    return pace.expand(losses.shape[1]).clone()  # (M,)


def self_paced_weights(losses: Tensor, pace: Tensor) -> Tensor:
    """v_il = 1 if ℓ_il < λ_l else 0: the minimiser of Σ v ℓ − λ Σ v over v ∈ {0, 1}.

    Args:
        losses: (N, M) ℓ_il.
        pace: (M,) λ per label (one value repeated in global admission).

    Returns:
        (N, M) float 0/1 weights.
    """
    return (losses < pace[None, :]).float()  # (N, M)


def self_paced_loss(losses: Tensor, v: Tensor) -> Tensor:
    """Σ v_il ℓ_il / max(1, Σ v_il): the mean loss of the admitted pairs (0, in the graph, if none).

    Args:
        losses: (B, M) ℓ_il.
        v: (B, M) 0/1 weights.

    Returns:
        Scalar loss.
    """
    return (v * losses).sum() / v.sum().clamp(min=1.0)


def classifier_logits(params: dict[str, Tensor], x: Tensor) -> Tensor:
    """f_θ(x): linear (``w``, ``b``) or one ReLU hidden layer (``w1``, ``b1``, ``w``, ``b``).

    Args:
        params: the parameter tensors.
        x: (B, F) standardised features.

    Returns:
        (B, M) logits.
    """
    if "w1" in params:
        x = torch.relu(x @ params["w1"].T + params["b1"])  # (B, H)
    return x @ params["w"].T + params["b"]  # (B, M)


def _uniform(shape: tuple[int, ...], fan_in: int, gen: torch.Generator) -> Tensor:
    bound = 1.0 / np.sqrt(fan_in)  # nn.Linear's default bound, drawn from our generator
    return (torch.rand(shape, generator=gen) * 2 - 1) * bound


class MLSPL(ShallowEstimator):
    """Per-pair BCE classifier trained on self-paced (easy-to-hard) instance-label pairs.

    Args:
        hidden: 0 for a linear classifier, else the width H of one ReLU hidden layer.
        epochs: T, the passes (one pace step each) (30).
        batch_size: rows per Adam step (256).
        lr: Adam learning rate (1e-2).
        weight_decay: Adam L2 weight decay (1e-4).
        start_fraction: q, the share of pairs admitted in epoch 1 (0.5).
        growth: λ_{t+1} / λ_t (1.3).
        admission: "global" (one λ) or "per_label" (one λ per label).
    """

    method = "mlspl"

    def __init__(self, *, hidden: int = 0, epochs: int = 30, batch_size: int = 256, lr: float = 1e-2,
                 weight_decay: float = 1e-4, start_fraction: float = 0.5, growth: float = 1.3,
                 admission: str = "global") -> None:
        self.hidden = check_int(hidden, "hidden", 0)
        self.epochs = check_int(epochs, "epochs", 0)
        self.batch_size = check_int(batch_size, "batch_size", 1)
        self.lr = check_positive(lr, "lr")
        if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or weight_decay < 0:
            raise ConfigError(f"weight_decay: expected a number >= 0, got {weight_decay!r}")
        self.weight_decay = float(weight_decay)
        self.start_fraction = check_positive(start_fraction, "start_fraction")
        if self.start_fraction > 1:
            raise ConfigError(f"start_fraction: expected a number in (0, 1], got {start_fraction!r}")
        self.growth = check_positive(growth, "growth")
        if self.growth < 1:
            raise ConfigError(f"growth: expected a number >= 1 (the pace only grows), got {growth!r}")
        if admission not in ADMISSIONS:
            raise ConfigError(f"admission: expected one of {list(ADMISSIONS)}, got {admission!r}")
        self.admission = admission
        self.admitted: list[float] = []  # share of pairs admitted in each epoch, for inspection
        self._fitted = False

    def _init_params(self, f: int, m: int, prior: Tensor, gen: torch.Generator) -> dict[str, Tensor]:
        bias = torch.logit(prior.clamp(1e-3, 1 - 1e-3))  # (M,) log-odds of the label frequencies
        if self.hidden == 0:
            return {"w": _uniform((m, f), f, gen), "b": bias}
        h = self.hidden
        return {"w1": _uniform((h, f), f, gen), "b1": torch.zeros(h), "w": _uniform((m, h), h, gen), "b": bias}

    def _all_losses(self, x: Tensor, y: Tensor) -> Tensor:
        with torch.no_grad():
            return torch.cat([pair_losses(classifier_logits(self.params, x[s:s + _EVAL_ROWS]), y[s:s + _EVAL_ROWS])
                              for s in range(0, x.shape[0], _EVAL_ROWS)])  # (N, M)

    def fit(self, X: Any, Y: Any, *, seed: int = 0) -> MLSPL:
        """Train by alternating the self-paced weights v and one Adam pass over θ, T times.

        Args:
            X: (N, F) float features.
            Y: (N, M) 0/1 labels.
            seed: seeds the initial weights and the batch order.

        Returns:
            self.
        """
        x_np = check_features(X, "X")
        y_np = check_labels(Y, x_np.shape[0], "Y")
        n, f = x_np.shape
        gen = torch.Generator().manual_seed(int(seed))
        x = torch.tensor(x_np, dtype=torch.float32)  # (N, F)
        y = torch.from_numpy(y_np).float()  # (N, M)
        self.mean, self.std = x.mean(0), x.std(0, correction=0).clamp(min=1e-6)  # (F,) each
        x = (x - self.mean) / self.std  # (N, F)
        self.params = {k: p.requires_grad_(True) for k, p in self._init_params(f, y.shape[1], y.mean(0), gen).items()}
        opt = torch.optim.Adam(list(self.params.values()), lr=self.lr, weight_decay=self.weight_decay)
        pace = initial_pace(self._all_losses(x, y), self.start_fraction, self.admission == "per_label")  # (M,)
        self.admitted = []
        for _ in range(self.epochs):
            v = self_paced_weights(self._all_losses(x, y), pace)  # (N, M), θ fixed
            self.admitted.append(float(v.mean()))
            order = torch.randperm(n, generator=gen)  # (N,)
            for start in range(0, n, self.batch_size):
                b = order[start:start + self.batch_size]  # (B,)
                loss = self_paced_loss(pair_losses(classifier_logits(self.params, x[b]), y[b]), v[b])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            pace = pace * self.growth
        self.params = {k: p.detach() for k, p in self.params.items()}
        self.num_features = f
        self._fitted = True
        return self

    def predict_scores(self, X: Any) -> np.ndarray:
        """σ(f_θ(x)) for every label.

        Args:
            X: (Q, F) float features, F as in ``fit``.

        Returns:
            (Q, M) float32 in [0, 1].
        """
        self._check_fitted()
        x = check_features(X, "X", width=self.num_features)
        x = (torch.tensor(x, dtype=torch.float32) - self.mean) / self.std  # (Q, F)
        with torch.no_grad():
            return torch.sigmoid(classifier_logits(self.params, x)).numpy().astype(np.float32)  # (Q, M)

    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters, parameters and feature standardisation (``torch.save``-able)."""
        self._check_fitted()
        return {
            "method": self.method, "hidden": self.hidden, "epochs": self.epochs, "batch_size": self.batch_size,
            "lr": self.lr, "weight_decay": self.weight_decay, "start_fraction": self.start_fraction,
            "growth": self.growth, "admission": self.admission, "admitted": list(self.admitted),
            "mean": self.mean.clone(), "std": self.std.clone(),
            "params": {k: p.clone() for k, p in self.params.items()},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> MLSPL:
        """Rebuild a fitted model from ``state_dict()``.

        Raises:
            ValueError: the state is of another method or misses keys.
        """
        hyper = ("hidden", "epochs", "batch_size", "lr", "weight_decay", "start_fraction", "growth", "admission")
        check_state(state, cls.method, hyper + ("mean", "std", "params"))
        model = cls(**{key: state[key] for key in hyper})
        model.admitted = list(state.get("admitted", []))
        model.mean, model.std = state["mean"].clone(), state["std"].clone()
        model.params = {k: p.clone() for k, p in state["params"].items()}
        want = {"w", "b"} | ({"w1", "b1"} if model.hidden else set())
        if set(model.params) != want:
            raise DataError(f"state_dict of 'mlspl': expected params {sorted(want)}, got {sorted(model.params)}")
        model.num_features = model.mean.shape[0]
        model._fitted = True
        return model
