"""ZCA whitening: decorrelates and unit-scales the training data, stays close to it, reusable."""

import numpy as np
import pytest

from neuroemu.data.preprocess import ZCA


def test_zca_whitens_and_is_symmetric(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 6))
    x = (rng.standard_normal((20000, 6)) @ a + 3.0).reshape(-1, 2, 3).astype(np.float32)
    z = ZCA(eps=1e-6).fit(x)
    w = z.transform(x)
    assert w.shape == x.shape and w.dtype == np.float32
    flat = w.reshape(len(w), -1).astype(np.float64)
    np.testing.assert_allclose(flat.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(np.cov(flat, rowvar=False), np.eye(6), atol=1e-3)
    np.testing.assert_allclose(z.matrix, z.matrix.T, atol=1e-10)  # ZCA, not any whitening: symmetric
    # regularised: directions of small variance are damped, not blown up
    assert ZCA(eps=1.0).fit(x).transform(x).reshape(len(x), -1).std(axis=0).max() < 1.0
    path = z.save(tmp_path / "zca")
    # the same 5 samples through both: rows of the 20000-sample transform come from another BLAS
    # call, which may round differently
    np.testing.assert_array_equal(ZCA.load(path).transform(x[:5]), z.transform(x[:5]))
    assert z.transform(x[:3].astype(np.float64)).dtype == np.float64 and w.dtype == np.float32


def test_zca_errors():
    with pytest.raises(ValueError, match="not fitted"):
        ZCA().transform(np.ones((3, 4)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        ZCA().fit(np.ones((1, 4)))
    with pytest.raises(ValueError, match="expected samples of 4 values"):
        ZCA().fit(np.random.default_rng(0).random((10, 4))).transform(np.ones((2, 5)))
    with pytest.raises(ValueError, match="eps"):
        ZCA(eps=0.0)
