"""The target-distribution task of LIF sampling: learn the parameters that make the chip's sampled
distribution a given Boltzmann distribution (every unit visible)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..boltzmann import exact_distribution, moments, sampled_dkl
from ..rules.boltzmann import Moments


class TargetDistribution:
    """The Boltzmann machine (W, b) as a target: every update's batch is its exact moments; an
    evaluation samples the chip's machine for ``eval_ms`` (``eval_chains`` chains) and reports
    D_KL(p* ‖ p_sampled) (``dkl``)."""

    def __init__(self, w, b, *, eval_ms: float = 100000.0, eval_chains: int = 1):
        self.w, self.b = np.asarray(w, np.float64), np.asarray(b, np.float64)
        self.p = exact_distribution(self.w, self.b)
        mean, corr = moments(self.p, len(self.b))
        self.target = Moments(mean, corr)
        self.eval_ms, self.eval_chains = float(eval_ms), int(eval_chains)

    def batch(self, step: int) -> Moments:
        return self.target

    def batches(self, epoch: int) -> list[Moments]:
        return [self.target]

    def sampled(self, chip, duration_ms: float | None = None):
        """A long free run of the chip's machine (its states pooled over chains)."""
        run = chip.model.sample(chip, None, duration_ms=duration_ms or self.eval_ms, chains=self.eval_chains)
        return run.states.reshape(-1, run.states.shape[-1]), run

    def evaluate(self, chip, stage: str, last: Any = None) -> dict[str, float]:
        z, _ = self.sampled(chip)
        return {"dkl": sampled_dkl(self.p, z)}


def boltzmann_target(k: int = 5, *, machine_seed: int = 0, scale_w: float = 1.0, scale_b: float = 1.0,
                     eval_ms: float = 20000.0) -> TargetDistribution:
    """The target distribution of a random K-unit Boltzmann machine drawn from ``machine_seed``
    (:func:`neuroemu.boltzmann.random_bm`), for a config's ``task`` section."""
    from ..boltzmann import random_bm

    w, b = random_bm(int(k), np.random.default_rng([machine_seed, int(k)]), scale_w=scale_w, scale_b=scale_b)
    return TargetDistribution(w, b, eval_ms=eval_ms)


# ---------------------------------------------------------------------------------------- images
def binary_images(x, side: int, threshold: float = 0.5) -> np.ndarray:
    """28×28 images (n, 784) in [0, 1] shrunk to side×side (area-weighted linear interpolation,
    :func:`scipy.ndimage.zoom` of order 1) and binarised at ``threshold``: (n, side²) uint8."""
    from scipy.ndimage import zoom

    imgs = np.asarray(x, np.float64).reshape(-1, 28, 28)
    small = zoom(imgs, (1, side / 28, side / 28), order=1, grid_mode=True, mode="nearest")
    return (small.reshape(len(imgs), -1) > threshold).astype(np.uint8)


def layered_mask(sizes) -> np.ndarray:
    """Connections of a layered (hierarchical) machine: each layer to the next, both ways."""
    n = int(np.sum(sizes))
    mask = np.zeros((n, n), bool)
    edges = np.cumsum([0, *sizes])
    for i in range(len(sizes) - 1):
        a, b, c = edges[i], edges[i + 1], edges[i + 2]
        mask[a:b, b:c] = mask[b:c, a:b] = True
    return mask


class ImageTask:
    """A hierarchical Boltzmann machine on binary images: units [pixels | hidden | labels] (layered:
    pixels ↔ hidden ↔ labels, one label unit per class). Training batches clamp pixels and the
    one-hot label of ``batch_size`` training images (:class:`~neuroemu.rules.boltzmann.Clamped`).

    Evaluations clamp the pixels of test images and read the label units (the most active one is
    the class: ``accuracy``); at the final evaluation also pattern completion: part of each test
    image occluded (``occlusions``: ``lower_half``, ``left_half``, ``centre_patch``), the rest clamped, the
    occluded pixels read as on when on for more than half of the time; ``completion_error``: the
    fraction of occluded pixels that differ from the true ones (``mean_image_error``: the same for
    the training set's mean image, thresholded at ½: a reference that ignores the visible part),
    ``occluded_accuracy``: the classification of the occluded images. ``eval_ms`` of sampling per test image (one chain each)."""

    OCCLUSIONS = ("lower_half", "left_half", "centre_patch")

    def __init__(self, train_x, train_y, test_x, test_y, *, side: int, classes, hidden: int, batch_size: int = 20,
                 eval_ms: float = 200.0, eval_images: int | None = None, occlusions=OCCLUSIONS, rng=None):
        from ..rng import as_rng

        self.side, self.classes, self.hidden = int(side), list(classes), int(hidden)
        self.n_pix, self.n_lab = self.side ** 2, len(self.classes)
        self.sizes = (self.n_pix, self.hidden, self.n_lab)
        self.n = int(sum(self.sizes))
        self.visible = np.concatenate([np.arange(self.n_pix), np.arange(self.n - self.n_lab, self.n)])
        self.train_x, self.train_y, self.test_x, self.test_y = train_x, train_y, test_x, test_y
        self.batch_size, self.eval_ms = int(batch_size), float(eval_ms)
        self.eval_images = len(test_x) if eval_images is None else min(int(eval_images), len(test_x))
        bad = [o for o in occlusions if o not in self.OCCLUSIONS]
        if bad:
            raise ValueError(f"occlusions: unknown {bad[0]!r}; expected some of {', '.join(self.OCCLUSIONS)}")
        self.occlusions = list(occlusions)
        self.rng = as_rng(rng)
        self.samples: dict[str, Any] = {}

    def __getstate__(self):  # the data is restored from the task built anew (checkpoints)
        state = dict(self.__dict__)
        for k in ("train_x", "train_y", "test_x", "test_y"):
            state[k] = None
        return state

    def restore(self, fresh: "ImageTask") -> None:
        for k in ("train_x", "train_y", "test_x", "test_y"):
            setattr(self, k, getattr(fresh, k))

    def mask(self) -> np.ndarray:
        return layered_mask(self.sizes)

    def onehot(self, y) -> np.ndarray:
        return (np.asarray(y)[:, None] == np.arange(self.n_lab)[None, :]).astype(np.uint8)

    def batch(self, step: int):
        from ..rules.boltzmann import Clamped

        i = self.rng.choice(len(self.train_x), self.batch_size, replace=False)
        return Clamped(np.concatenate([self.train_x[i], self.onehot(self.train_y[i])], axis=1), self.visible)

    def occluded(self, kind: str) -> np.ndarray:
        """Boolean (side²,) of the pixels an occlusion hides."""
        s = self.side
        m = np.zeros((s, s), bool)
        if kind == "lower_half":
            m[s // 2:] = True
        elif kind == "left_half":
            m[:, :s // 2] = True
        else:
            q = s // 4
            m[q:s - q, q:s - q] = True
        return m.reshape(-1)

    def _run(self, chip, x, hide=None):
        """Label on-fractions (images, classes) and pixel on-fractions with the pixels ``hide`` free."""
        clamp = -np.ones((len(x), self.n), np.int8)
        clamp[:, :self.n_pix] = x
        if hide is not None:
            clamp[:, :self.n_pix][:, hide] = -1
        run = chip.model.sample(chip, clamp, duration_ms=self.eval_ms)
        on = run.on_fraction()
        return on[:, self.n - self.n_lab:], on[:, :self.n_pix]

    def evaluate(self, chip, stage: str, last: Any = None) -> dict[str, float]:
        x, y = self.test_x[:self.eval_images], self.test_y[:self.eval_images]
        labels, _ = self._run(chip, x)
        out = {"accuracy": float((labels.argmax(axis=1) == y).mean())}
        if stage != "final":
            return out
        for kind in self.occlusions:
            hide = self.occluded(kind)
            labels, pixels = self._run(chip, x, hide)
            guess = pixels[:, hide] > 0.5
            out[f"completion_error_{kind}"] = float((guess != x[:, hide].astype(bool)).mean())
            mean_image = self.train_x.mean(axis=0)[hide] > 0.5  # a reference that ignores the visible part
            out[f"mean_image_error_{kind}"] = float((mean_image[None, :] != x[:, hide].astype(bool)).mean())
            out[f"occluded_accuracy_{kind}"] = float((labels.argmax(axis=1) == y).mean())
            self.samples[kind] = {"true": x[:8].tolist(), "completed": pixels[:8].tolist(), "hidden": hide.tolist()}
        return out
