"""Hebbian learning rules in per-sample and batched ("FastHebb") form (Lagani et al. 2022).

A Hebbian layer has weights W (K units × D inputs); each unit's weight vector w_i changes with its
own pre-synaptic input x and post-synaptic response only. Per sample (papers.md §5):

* competitive (soft-WTA, hard k-WTA):  Δw_i = η c_i r_i (x − w_i)
    soft-WTA: r = softmax(s / T) over the units, s_i = similarity(x, w_i);
    k-WTA:    r_i = 1 for the k most similar units, else 0;
* Hebbian PCA (Sanger):  Δw_i = η c y_i (x − Σ_{j≤i} y_j w_j),  y = ReLU(W x);
* Oja:                   Δw_i = η c y_i (x − y_i w_i),           y = W x.

Similarities: ``dot`` (w·x), ``cosine`` and ``raised_cosine`` ((1 + cos)/2)², the authors' choice.
The factor c aggregates a batch of N samples: ``mean`` (c = 1/N), ``sum`` (c = 1) or, for the
competitive rules, ``responses`` (c_i = 1 / Σ_n r_ni: each unit moves toward the response-weighted
mean of its inputs, as k-means/EM).

The batched forms compute the sum of the per-sample updates of a batch X (N × D), with W held fixed
over the batch, as matrix products (C the per-sample, per-unit factors):

* competitive:  ΔW = η [(C∘R)ᵀ X − diag(1ᵀ(C∘R)) W]
* Sanger:       ΔW = η c [Yᵀ X − tril(Yᵀ Y) W]
* Oja:          ΔW = η c [Yᵀ X − diag(1ᵀ(Y∘Y)) W]

:meth:`HebbianRule.per_sample` is the per-sample form, literally: the (N, K, D) tensor of every
sample's update (what one computes without the batched algebra); its sum over samples equals
:meth:`HebbianRule.update` to float tolerance (tested for every rule).

A rule returns the update it *wants* (weight units). :class:`Hebbian` is the rule on a chip
(:mod:`neuroemu.rules.base`): it trains the one layer of a Hebbian layer model
(:mod:`neuroemu.models.hebbian`, fully connected or convolutional) from the samples the model gives
(a conv layer: every (image, position) patch, so its update is aggregated over batch × positions),
reading the products x·w_i from the chip (a device array: with its read noise) and yielding ΔW for
the layer's update scheme. :class:`Unlabelled` is the task of such a run: images without labels, in a
shuffled order per epoch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..chip import Chip, Update
from ..errors import ConfigError
from ..rng import as_rng
from .base import Rule, RuleError, Step, check_traits

__all__ = ["Hebbian", "HebbianRule", "Unlabelled", "RULES", "SIMILARITIES",
           "WEIGHTINGS", "similarity", "responses"]

RULES = ("swta", "kwta", "hpca", "oja")
SIMILARITIES = ("dot", "cosine", "raised_cosine")
WEIGHTINGS = ("mean", "sum", "responses")
_EPS = 1e-12


def _matrix(a, what: str, cols: int | None = None) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2 or (cols is not None and a.shape[1] != cols) or a.dtype.kind != "f":
        want = f"(N, {cols})" if cols is not None else "(rows, cols)"
        raise ValueError(f"{what}: expected a float array of shape {want}, got shape {a.shape} dtype {a.dtype}")
    return a


def similarity(w, x, kind: str = "raised_cosine") -> np.ndarray:
    """Similarities S (N, K) of inputs x (N, D) to the weight vectors w (K, D)."""
    w = _matrix(w, "w")
    x = _matrix(x, "x", w.shape[1])
    if kind not in SIMILARITIES:
        raise ValueError(f"similarity: expected one of {', '.join(SIMILARITIES)}, got {kind!r}")
    s = x @ w.T
    if kind == "dot":
        return s
    cos = s / np.maximum(np.linalg.norm(x, axis=1)[:, None] * np.linalg.norm(w, axis=1)[None, :], _EPS)
    return cos if kind == "cosine" else (0.5 * (1.0 + cos)) ** 2


def responses(s, rule: str, *, temperature: float = 0.02, k: int = 1) -> np.ndarray:
    """Competitive responses R (N, K) from similarities S: softmax(S/T) (``swta``) or the k largest
    set to 1 (``kwta``; ties to the lower index)."""
    if rule not in ("swta", "kwta"):
        raise ValueError(f"responses: expected rule 'swta' or 'kwta', got {rule!r}")
    s = np.array(s, dtype=np.result_type(np.asarray(s).dtype, np.float32))
    return _competitive(s, None, None, "dot", rule, temperature, k)


_BLOCK = 4096  # rows per block of the response computation (a block stays in cache across its passes)


def _competitive(wx, xnorm, wnorm, sim, rule, temperature, k) -> np.ndarray:
    """Responses from the products wx (N, K), in place (wx is consumed), a block of rows at a time."""
    dt = wx.dtype.type
    if sim != "dot":
        inv_w = (1.0 / np.maximum(wnorm, _EPS)).astype(wx.dtype)
        inv_x = (1.0 / np.maximum(xnorm, _EPS)).astype(wx.dtype)
    for i in range(0, len(wx), _BLOCK):
        s = wx[i:i + _BLOCK]
        if sim != "dot":
            s *= inv_w
            s *= inv_x[i:i + _BLOCK, None]
            if sim == "raised_cosine":
                s += dt(1.0)
                s *= dt(0.5)
                np.square(s, out=s)
        if rule == "swta":
            s -= s.max(axis=1, keepdims=True)
            s *= dt(1.0 / temperature)
            np.exp(s, out=s)
            s /= s.sum(axis=1, keepdims=True)
        elif k == 1:
            top = s.argmax(axis=1)[:, None]
            s[...] = 0
            np.put_along_axis(s, top, dt(1.0), axis=1)
        else:  # above the k-th largest value, then the lowest indices among those equal to it
            kth = -np.partition(-s, k - 1, axis=1)[:, k - 1:k]
            above = s > kth
            tied = s == kth
            tied &= np.cumsum(tied, axis=1) <= k - above.sum(axis=1, keepdims=True)
            s[...] = above | tied
    return wx


@dataclasses.dataclass(frozen=True)
class HebbianRule:
    """One Hebbian rule and its settings (see the module doc).

    rule: ``swta``, ``kwta``, ``hpca`` or ``oja``; lr: η; temperature: T of the soft-WTA;
    k: winners of the k-WTA; sim: similarity of the competitive rules; weighting: how a batch is
    aggregated (``mean``, ``sum``, or ``responses`` for the competitive rules).
    """

    rule: str = "swta"
    lr: float = 0.01
    temperature: float = 0.02
    k: int = 1
    sim: str = "raised_cosine"
    weighting: str = "mean"

    def __post_init__(self):
        if self.rule not in RULES:
            raise ConfigError(f"hebbian rule: expected one of {', '.join(RULES)}, got {self.rule!r}")
        if self.sim not in SIMILARITIES:
            raise ConfigError(f"hebbian similarity: expected one of {', '.join(SIMILARITIES)}, got {self.sim!r}")
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(f"hebbian weighting: expected one of {', '.join(WEIGHTINGS)}, got {self.weighting!r}")
        if self.weighting == "responses" and not self.competitive:
            raise ConfigError(f"hebbian weighting: 'responses' needs a competitive rule (swta, kwta), got {self.rule!r}")
        if not (np.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"hebbian lr: expected a finite value > 0, got {self.lr!r}")
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"hebbian temperature: expected a finite value > 0, got {self.temperature!r}")
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise ConfigError(f"hebbian k: expected an integer >= 1, got {self.k!r}")

    @property
    def competitive(self) -> bool:
        return self.rule in ("swta", "kwta")

    # ------------------------------------------------------------------ responses
    def activity(self, w, x, wx=None) -> np.ndarray:
        """The post-synaptic quantity the rule learns from, (N, K): R for the competitive rules,
        y = ReLU(W x) for HPCA, y = W x for Oja. ``wx`` (N, K): the products x·w_i when they come
        from elsewhere (e.g. read from an analog array); default computed here."""
        w = _matrix(w, "w")
        x = _matrix(x, "x", w.shape[1])
        # the products: computed here, or given (copied: the competitive rules turn them into R in place)
        y = x @ w.T if wx is None else np.array(wx, dtype=w.dtype, order="C")
        if y.shape != (len(x), len(w)):
            raise ValueError(f"wx: expected shape {(len(x), len(w))}, got {y.shape}")
        if self.competitive:
            if self.rule == "kwta" and self.k > w.shape[0]:
                raise ConfigError(f"hebbian k: expected at most the {w.shape[0]} units of the layer, got {self.k}")
            norms = (None, None) if self.sim == "dot" else (np.linalg.norm(x, axis=1), np.linalg.norm(w, axis=1))
            return _competitive(y, *norms, self.sim, self.rule, self.temperature, self.k)
        return np.maximum(y, 0.0) if self.rule == "hpca" else y

    def _factors(self, a: np.ndarray) -> np.ndarray:
        """Aggregation factors c: one per unit, (1, K), or one for all, (1, 1) (the same for every sample)."""
        n = a.shape[0]
        if self.weighting == "mean":
            return np.full((1, 1), 1.0 / n, a.dtype)
        if self.weighting == "sum":
            return np.ones((1, 1), a.dtype)
        return (1.0 / np.maximum(np.abs(a).sum(axis=0, keepdims=True), _EPS)).astype(a.dtype)

    # ------------------------------------------------------------------ updates
    def update(self, w, x, wx=None) -> np.ndarray:
        """The batched (FastHebb) update ΔW (K, D) of a batch x (N, D), W held fixed (``wx``: see
        :meth:`activity`)."""
        w = _matrix(w, "w")
        x = _matrix(x, "x", w.shape[1])
        a = self.activity(w, x, wx)
        # the factors c are per unit (or one number): applied to the (K, ·) products, not to a
        c = self.lr * self._factors(a).reshape(-1, 1)
        if self.competitive:
            dw = a.T @ x - a.sum(axis=0)[:, None] * w
        elif self.rule == "hpca":
            dw = a.T @ x - np.tril(a.T @ a) @ w
        else:
            dw = a.T @ x - np.einsum("nk,nk->k", a, a)[:, None] * w
        dw *= c
        return dw.astype(w.dtype, copy=False)

    def per_sample(self, w, x) -> np.ndarray:
        """Every sample's own update, (N, K, D): the per-sample equations applied one sample at a
        time (vectorised over samples); summed over samples it is :meth:`update`."""
        w = _matrix(w, "w")
        x = _matrix(x, "x", w.shape[1])
        a = self.activity(w, x)
        ca = np.broadcast_to(self._factors(a), a.shape) * a
        if self.competitive:
            d = x[:, None, :] - w[None, :, :]
        elif self.rule == "hpca":
            d = x[:, None, :] - np.cumsum(a[:, :, None] * w[None, :, :], axis=1)
        else:
            d = x[:, None, :] - a[:, :, None] * w[None, :, :]
        return (self.lr * ca[:, :, None] * d).astype(w.dtype, copy=False)

    def per_sample_loop(self, w, x) -> np.ndarray:
        """The per-sample equations applied one sample at a time (each sample's response and update
        computed on its own, then summed): the straightforward implementation of a Hebbian rule.
        Equal to :meth:`update`."""
        w = _matrix(w, "w")
        x = _matrix(x, "x", w.shape[1])
        acts = [self.activity(w, x[n:n + 1])[0] for n in range(len(x))]
        c = np.broadcast_to(self._factors(np.asarray(acts)), (len(x), len(w)))
        dw = np.zeros_like(w)
        for n, a in enumerate(acts):
            ca = (self.lr * c[n] * a)[:, None]
            if self.competitive:
                dw += ca * (x[n] - w)
            elif self.rule == "hpca":
                dw += ca * (x[n] - np.cumsum(a[:, None] * w, axis=0))
            else:
                dw += ca * (x[n] - a[:, None] * w)
        return dw

    def per_sample_sum(self, w, x, chunk: int = 256) -> np.ndarray:
        """Sum over samples of :meth:`per_sample`, computed ``chunk`` samples at a time (the
        per-sample baseline at bounded memory). Factors of ``mean``/``responses`` use the whole batch."""
        w = _matrix(w, "w")
        x = _matrix(x, "x", w.shape[1])
        if self.weighting == "sum":
            return sum((self.per_sample(w, x[i:i + chunk]).sum(axis=0) for i in range(0, len(x), chunk)),
                       np.zeros_like(w))
        a = self.activity(w, x)
        c = np.broadcast_to(self._factors(a), a.shape)
        out = np.zeros_like(w)
        unit = dataclasses.replace(self, weighting="sum")
        for i in range(0, len(x), chunk):
            per = unit.per_sample(w, x[i:i + chunk])
            out += np.einsum("nk,nkd->kd", c[i:i + chunk], per)
        return out


# ---------------------------------------------------------------------------------------- on a chip
class Hebbian(Rule):
    """A Hebbian rule (:class:`HebbianRule`: ``rule``, ``lr``, ``temperature``, ``k``, ``sim``,
    ``weighting``, or ``core=`` one) on a chip whose model is one Hebbian layer
    (:mod:`neuroemu.models.hebbian`).

    A step on a batch: the model's samples x of the batch, the products x·w_i read from the layer
    (``layer.forward``: a device array's read noise included) and the weights as the layer holds them
    (in the model's dtype); yields ``{"max_w": max|W|}`` (the weights it learns from), the batched
    update ΔW, then ``{"max_w": ...}`` of the weights after it, so that a watch on ``max_w`` stops a
    run at the first update that makes the weights NaN/inf. On a device chip ΔW goes through the
    layer's update scheme (pulses: ``sign``, ``stochastic``, ``mixed_precision``...)."""

    requires = frozenset({"feedforward", "rate", "single_layer"})

    def __init__(self, rule: str = "swta", *, core: HebbianRule | None = None, **settings: Any):
        self.core = core if core is not None else HebbianRule(rule, **settings)

    @property
    def name(self) -> str:
        return f"Hebbian({self.core.rule})"

    def bind(self, chip: Chip) -> None:
        check_traits(self, chip)
        if len(chip) != 1 or not hasattr(chip.model, "samples"):
            raise RuleError(f"rule {self.name} trains one layer from its model's samples; the chip's model "
                            f"{chip.model!r} has {len(chip)} layers" + ("" if hasattr(chip.model, "samples")
                                                                       else " and no samples()"))
        n_units = next(iter(chip)).weights().shape[0]
        if self.core.rule == "kwta" and self.core.k > n_units:
            raise RuleError(f"rule {self.name}: k = {self.core.k} winners, but the layer has {n_units} units")

    def step(self, chip: Chip, batch: Any) -> Step:
        layer = next(iter(chip))
        x = chip.model.samples(batch)
        dtype = getattr(chip.model, "dtype", x.dtype)
        w = np.asarray(layer.weights(), dtype)
        yield {"max_w": np.abs(w).max()}
        yield Update(layer.name, dw=self.core.update(w, x, layer.forward(x)))
        yield {"max_w": np.abs(np.asarray(layer.weights(), dtype)).max()}


class Unlabelled:
    """The task of a Hebbian run: images ``x`` without labels, ``batch_size`` at a time in an order
    drawn from ``rng`` per epoch (the epoch protocol of :class:`neuroemu.train.Trainer`). A
    checkpoint keeps the order generator, not the images (:meth:`restore`)."""

    def __init__(self, x: np.ndarray, batch_size: int, rng: Any = None):
        self.x, self.batch_size, self.rng = x, int(batch_size), as_rng(rng)

    def batches(self, epoch: int) -> list[np.ndarray]:
        order = self.rng.permutation(len(self.x))
        return [self.x[order[i:i + self.batch_size]] for i in range(0, len(order), self.batch_size)]

    def evaluate(self, chip: Chip, stage: str, last: dict[str, Any]) -> dict[str, Any]:
        return {}

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "x"}

    def restore(self, fresh: "Unlabelled") -> None:
        self.x = fresh.x
