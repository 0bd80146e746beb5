"""C2AE: canonical-correlated autoencoder, OUR reimplementation on fixed feature vectors.

Paper: C.-K. Yeh, W.-C. Wu, W.-J. Ko, Y.-C. F. Wang, "Learning Deep Latent Spaces for
Multi-Label Classification", AAAI 2017. The authors released MATLAB only
(github.com/chihkuanyeh/C2AE); this PyTorch version is ours. The losses are those of
``retdm.losses.c2ae`` (see its docstring for their own deviations).

Legend: N training points, Q query points, B batch, F features, H hidden units, D latent
width, M labels.

Three MLPs, each one hidden layer with LeakyReLU (slope 0.1):

    Fx: x (F) -> z (D)    Fe: y (M) -> z (D)    Fd: z (D) -> label scores (M)

Training (Adam, mini-batches, features standardised with the training mean and std):

    L = c2ae_loss(fx=Fx(x), fe=Fe(y), scores=Fd(Fe(y)), labels=y, alpha, ortho_weight)
        + bce_weight · BCE(σ(Fd(Fe(y))), y)

Prediction: σ(Fd(Fx(x))). The paper's decoder output is a ranking score (its loss, Γ, only
compares a row's positives with its negatives and is blind to a shift of the whole row); we
squash it with a sigmoid so the shared metrics can threshold it at 0.5.

Deviations from the paper:

- Calibration at 0.5. Γ is blind to a shift of a whole row, so it leaves σ(Fd(·)) free to
  drift: on a synthetic 3,200 × 512 problem with 10 labels of mean frequency 0.19, Γ alone
  (zero-initialised nets) gave a mean test score of 0.36 and a Hamming loss of 0.193, no better
  than the label prior's 0.190. Two additions: Fd's output bias starts at the logit of each
  label's training frequency (alone: 0.22 and 0.132), and ``bce_weight`` (default 0.5) adds a
  binary cross-entropy on the same decoder output Fd(Fe(y)), which like Γ reaches Fe and Fd,
  not Fx (both: 0.19 and 0.12, with a higher mAP and CF1). ``bce_weight=0`` drops the second.
- Sizes. One hidden layer per network (H = 256) and D = M (the number of labels) by default,
  sized for a few thousand 512-d feature vectors and ~10 labels; the paper tunes its nets per
  dataset. A D well above M cannot meet the orthogonality penalty on Fe(y) (y has M bits).
- Batches. Each epoch splits a fresh permutation into ceil(N / batch_size) near-equal batches
  (no tiny last batch: the orthogonality penalty needs B well above 1).
- No early stopping or validation split: a fixed number of epochs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from retdm.errors import ConfigError, DataError
from retdm.losses.c2ae import c2ae_loss
from retdm.shallow.base import ShallowEstimator, check_features, check_int, check_labels, check_positive, check_state

NETS = ("x", "e", "d")  # Fx, Fe, Fd: the prefix of their parameters
LEAKY_SLOPE = 0.1


def mlp(params: dict[str, Tensor], net: str, z: Tensor) -> Tensor:
    """One of Fx, Fe, Fd: Linear, LeakyReLU, Linear.

    Args:
        params: all parameters; this net's are ``{net}.w1``, ``{net}.b1``, ``{net}.w2``, ``{net}.b2``.
        net: "x" (Fx), "e" (Fe) or "d" (Fd).
        z: (B, in) its input: standardised features, labels or latent codes.

    Returns:
        (B, out) its output.
    """
    h = F.leaky_relu(z @ params[f"{net}.w1"].T + params[f"{net}.b1"], LEAKY_SLOPE)  # (B, H)
    return h @ params[f"{net}.w2"].T + params[f"{net}.b2"]  # (B, out)


def _uniform(shape: tuple[int, ...], fan_in: int, gen: torch.Generator) -> Tensor:
    bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default bound, drawn from our generator
    return (torch.rand(shape, generator=gen) * 2 - 1) * bound


def _non_negative(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value) or value < 0:
        raise ConfigError(f"{name}: expected a finite number >= 0, got {value!r}")
    return float(value)


class C2AE(ShallowEstimator):
    """C2AE: align feature and label embeddings in a latent space, decode labels from it.

    Args:
        hidden: H, the hidden width of Fx, Fe and Fd (256).
        latent: D, the latent width; None (default) for D = M, the number of labels.
        epochs: passes over the training set (30).
        batch_size: the most rows per Adam step (128).
        lr: Adam learning rate (1e-3).
        weight_decay: Adam L2 weight decay (1e-4).
        alpha: α, the weight of the ranking loss Γ (1.0, as ``c2ae_loss``).
        ortho_weight: weight of the orthogonality penalties (0.5, as ``c2ae_loss``).
        bce_weight: weight of the BCE calibration term, our addition (0.5; 0 for the paper).
    """

    method = "c2ae"
    HYPER = ("hidden", "latent", "epochs", "batch_size", "lr", "weight_decay", "alpha", "ortho_weight",
             "bce_weight")

    def __init__(self, *, hidden: int = 256, latent: int | None = None, epochs: int = 30, batch_size: int = 128,
                 lr: float = 1e-3, weight_decay: float = 1e-4, alpha: float = 1.0, ortho_weight: float = 0.5,
                 bce_weight: float = 0.5) -> None:
        self.hidden = check_int(hidden, "hidden", 1)
        self.latent = None if latent is None else check_int(latent, "latent", 1)
        self.epochs = check_int(epochs, "epochs", 0)
        self.batch_size = check_int(batch_size, "batch_size", 2)
        self.lr = check_positive(lr, "lr")
        self.weight_decay = _non_negative(weight_decay, "weight_decay")
        self.alpha = check_positive(alpha, "alpha")
        self.ortho_weight = _non_negative(ortho_weight, "ortho_weight")
        self.bce_weight = _non_negative(bce_weight, "bce_weight")
        self.losses: list[float] = []  # mean training loss of each epoch, for inspection
        self._fitted = False

    def _init_params(self, f: int, m: int, prior: Tensor, gen: torch.Generator) -> dict[str, Tensor]:
        h, d = self.hidden, self.latent or m
        params = {}
        for net, (n_in, n_out) in zip(NETS, ((f, d), (m, d), (d, m))):
            params |= {f"{net}.w1": _uniform((h, n_in), n_in, gen), f"{net}.b1": torch.zeros(h),
                       f"{net}.w2": _uniform((n_out, h), h, gen), f"{net}.b2": torch.zeros(n_out)}
        params["d.b2"] = torch.logit(prior.clamp(1e-3, 1 - 1e-3))  # (M,) log-odds of the label frequencies
        return params

    def fit(self, X: Any, Y: Any, *, seed: int = 0) -> C2AE:
        """Train Fx, Fe and Fd jointly by Adam for ``epochs`` passes.

        Args:
            X: (N, F) float features, N >= 2.
            Y: (N, M) 0/1 labels.
            seed: seeds the initial weights and the batch order.

        Returns:
            self.
        """
        x_np = check_features(X, "X")
        y_np = check_labels(Y, x_np.shape[0], "Y")
        n, f = x_np.shape
        if n < 2:
            raise DataError(f"X: expected at least 2 rows (the latent penalties need a batch), got {n}")
        gen = torch.Generator().manual_seed(int(seed))
        x = torch.tensor(x_np, dtype=torch.float32)  # (N, F)
        y = torch.from_numpy(y_np).float()  # (N, M)
        self.mean, self.std = x.mean(0), x.std(0, correction=0).clamp(min=1e-6)  # (F,) each
        x = (x - self.mean) / self.std  # (N, F)
        init = self._init_params(f, y.shape[1], y.mean(0), gen)
        self.params = {k: p.requires_grad_(True) for k, p in init.items()}
        opt = torch.optim.Adam(list(self.params.values()), lr=self.lr, weight_decay=self.weight_decay)
        self.losses = []
        for _ in range(self.epochs):
            total = 0.0
            order = torch.randperm(n, generator=gen)  # (N,)
            for b in order.tensor_split(math.ceil(n / self.batch_size)):  # (B,) each, B <= batch_size
                fe = mlp(self.params, "e", y[b])  # (B, D)
                out = mlp(self.params, "d", fe)  # (B, M) Fd(Fe(y)): Γ and BCE reach Fe and Fd, not Fx
                loss = c2ae_loss(mlp(self.params, "x", x[b]), fe, out, y[b], self.alpha, self.ortho_weight)
                if self.bce_weight:
                    loss = loss + self.bce_weight * F.binary_cross_entropy_with_logits(out, y[b])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * len(b)
            self.losses.append(total / n)
        self.params = {k: p.detach() for k, p in self.params.items()}
        self._fitted = True
        return self

    def predict_scores(self, X: Any) -> np.ndarray:
        """σ(Fd(Fx(x))) for every label.

        Args:
            X: (Q, F) float features, F as in ``fit``.

        Returns:
            (Q, M) float32 in [0, 1].
        """
        self._check_fitted()
        x = check_features(X, "X", width=self.mean.shape[0])
        x = (torch.tensor(x, dtype=torch.float32) - self.mean) / self.std  # (Q, F)
        with torch.no_grad():
            out = mlp(self.params, "d", mlp(self.params, "x", x))  # (Q, M)
            return torch.sigmoid(out).numpy().astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters, parameters and feature standardisation (``torch.save``-able)."""
        self._check_fitted()
        return {"method": self.method, **{key: getattr(self, key) for key in self.HYPER},
                "losses": list(self.losses), "mean": self.mean.clone(), "std": self.std.clone(),
                "params": {k: p.clone() for k, p in self.params.items()}}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> C2AE:
        """Rebuild a fitted model from ``state_dict()``.

        Raises:
            ValueError: the state is of another method, misses keys or holds other parameters.
        """
        check_state(state, cls.method, cls.HYPER + ("mean", "std", "params"))
        model = cls(**{key: state[key] for key in cls.HYPER})
        model.losses = list(state.get("losses", []))
        model.mean, model.std = state["mean"].clone(), state["std"].clone()
        model.params = {k: p.clone() for k, p in state["params"].items()}
        want = {f"{net}.{p}" for net in NETS for p in ("w1", "b1", "w2", "b2")}
        if set(model.params) != want:
            raise DataError(f"state_dict of 'c2ae': expected params {sorted(want)}, got {sorted(model.params)}")
        model._fitted = True
        return model
