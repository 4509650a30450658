"""Backprop building blocks: im2col against loops, adjointness, finite-difference gradients, loss,
dtypes, a tiny training run and the error messages."""

import numpy as np
import pytest

from neuroemu.nn import (
    SGD,
    AvgPool2d,
    Conv2d,
    Dropout,
    Flatten,
    HardSigmoid,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
    accuracy,
    fit_softmax_regression,
    fold_patches,
    linear_probe,
    mse_loss,
    out_size,
    patches,
    softmax_cross_entropy,
    standardise,
    train_classifier,
)

CASES = [(1, 1, 0), (3, 1, 0), (3, 2, 1), (2, 2, 0), (3, 3, 2), (5, 1, 2)]  # (k, stride, pad)


def _ref_patches(x, k, s, p):
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    rows = []
    for b in range(n):
        for i in range(ho):
            for j in range(wo):
                rows.append(xp[b, :, i * s:i * s + k, j * s:j * s + k].ravel())
    return np.array(rows)


def _ref_conv(x, w4, b, s, p):
    n, c, h, wd = x.shape
    co, _, k, _ = w4.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    ho, wo = (h + 2 * p - k) // s + 1, (wd + 2 * p - k) // s + 1
    y = np.zeros((n, co, ho, wo))
    for bb in range(n):
        for o in range(co):
            for i in range(ho):
                for j in range(wo):
                    y[bb, o, i, j] = np.sum(xp[bb, :, i * s:i * s + k, j * s:j * s + k] * w4[o]) + b[o]
    return y


@pytest.mark.parametrize("k, s, p", CASES)
def test_patches_match_loops(k, s, p):
    x = np.random.default_rng(k * 10 + s).standard_normal((2, 3, 7, 6))
    cols = patches(x, k, s, p)
    assert cols.flags.c_contiguous and cols.dtype == x.dtype
    assert cols.shape == (2 * out_size(7, k, s, p) * out_size(6, k, s, p), 3 * k * k)
    np.testing.assert_array_equal(cols, _ref_patches(x, k, s, p))


@pytest.mark.parametrize("k, s, p", CASES)
def test_fold_patches_is_the_adjoint(k, s, p):
    rng = np.random.default_rng(k + 7 * s + 31 * p)
    x = rng.standard_normal((2, 3, 7, 6))
    cols = patches(x, k, s, p)
    c = rng.standard_normal(cols.shape)
    gx = fold_patches(c, x.shape, k, s, p)
    assert gx.shape == x.shape
    np.testing.assert_allclose(np.sum(cols * c), np.sum(x * gx), rtol=1e-12)


@pytest.mark.parametrize("k, s, p", [(3, 1, 0), (3, 2, 1), (2, 1, 1)])
def test_conv_forward_matches_loops(k, s, p):
    rng = np.random.default_rng(3)
    conv = Conv2d(3, 4, k, stride=s, pad=p, rng=rng, dtype=np.float64)
    conv.b[:] = rng.standard_normal(4)
    x = rng.standard_normal((2, 3, 6, 7))
    y = conv.forward(x)
    np.testing.assert_allclose(y, _ref_conv(x, conv.w.reshape(4, 3, k, k), conv.b, s, p), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- gradients
def _num_grad(f, a, eps=1e-6):
    """Central differences of the scalar f() with respect to every entry of a (changed in place, restored)."""
    g = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + eps
        fp = f()
        a[i] = old - eps
        fm = f()
        a[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


def _check_layer(layer, x, seed=0):
    """Finite-difference check of d<r, layer(x)>/dx and /dparams against backward(r)."""
    rng = np.random.default_rng(seed)
    r = rng.standard_normal(layer.forward(x).shape)

    def f():
        return float(np.sum(layer.forward(x, cache=False) * r))

    layer.forward(x)
    gx = layer.backward(r)
    grads = [g.copy() for g in layer.grads]
    assert gx.shape == x.shape and len(grads) == len(layer.params)
    np.testing.assert_allclose(gx, _num_grad(f, x), rtol=1e-5, atol=1e-8)
    for p, g in zip(layer.params, grads):
        assert g.shape == p.shape and g.dtype == p.dtype
        np.testing.assert_allclose(g, _num_grad(f, p), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("k, s, p", [(3, 1, 0), (3, 2, 1)])
def test_conv_gradients(k, s, p):
    rng = np.random.default_rng(1)
    conv = Conv2d(2, 3, k, stride=s, pad=p, rng=rng, dtype=np.float64)
    conv.b[:] = rng.standard_normal(3)
    _check_layer(conv, rng.standard_normal((2, 2, 5, 6)))


def test_conv_without_bias_gradients():
    conv = Conv2d(2, 2, 2, rng=4, dtype=np.float64, bias=False)
    assert conv.b is None and len(conv.params) == 1
    _check_layer(conv, np.random.default_rng(4).standard_normal((1, 2, 4, 4)))


@pytest.mark.parametrize("k, s, p", [(2, None, 0), (3, 2, 0), (2, 1, 0), (4, 2, 1), (3, 1, 1)])
def test_pool_gradients(k, s, p):
    x = np.random.default_rng(5).standard_normal((2, 2, 7, 6))
    for pool in (MaxPool2d(k, s, p), AvgPool2d(k, s, p)):
        assert pool.params == [] and pool.stride == (k if s is None else s)
        _check_layer(pool, x.copy())


def test_pool_padding_values():
    """PyTorch's geometry: max pooling pads with −∞, average pooling with zeros counted in the mean."""
    x = -np.arange(1.0, 17.0).reshape(1, 1, 4, 4)  # all negative: zero padding would win a max
    y = MaxPool2d(4, 2, 1).forward(x)
    assert y.shape == (1, 1, 2, 2)  # (4 + 2 − 4) // 2 + 1
    np.testing.assert_array_equal(y[0, 0], [[x[0, 0, :3, :3].max(), x[0, 0, :3, 1:].max()],
                                            [x[0, 0, 1:, :3].max(), x[0, 0, 1:, 1:].max()]])
    np.testing.assert_allclose(AvgPool2d(4, 2, 1).forward(x)[0, 0, 0, 0], x[0, 0, :3, :3].sum() / 16)
    with pytest.raises(ValueError, match="pad"):
        MaxPool2d(2, pad=2)


def test_pool_forward_values():
    x = np.arange(2 * 16, dtype=np.float64).reshape(1, 2, 4, 4)[:, :, ::-1]
    np.testing.assert_array_equal(MaxPool2d(2).forward(x), x.reshape(1, 2, 2, 2, 2, 2).max(axis=(3, 5)))
    np.testing.assert_array_equal(AvgPool2d(2).forward(x), x.reshape(1, 2, 2, 2, 2, 2).mean(axis=(3, 5)))
    assert MaxPool2d(2).forward(np.zeros((1, 1, 5, 5))).shape == (1, 1, 2, 2)  # floor


def test_linear_relu_flatten_gradients():
    rng = np.random.default_rng(6)
    lin = Linear(5, 3, rng=rng, dtype=np.float64)
    lin.b[:] = rng.standard_normal(3)
    _check_layer(lin, rng.standard_normal((4, 5)))
    _check_layer(ReLU(), rng.standard_normal((3, 4)))
    fl = Flatten()
    x = rng.standard_normal((2, 3, 2, 2))
    assert fl.forward(x).shape == (2, 12)
    _check_layer(fl, x)


def _small_net(rng, dtype=np.float64):
    return Sequential(Conv2d(1, 3, 3, pad=1, rng=rng, dtype=dtype), ReLU(), MaxPool2d(2), Flatten(),
                      Linear(3 * 3 * 3, 4, rng=rng, dtype=dtype))


def test_sequential_gradients_through_the_loss():
    rng = np.random.default_rng(7)
    net = _small_net(rng)
    for p in net.params:
        if p.ndim == 1:
            p[:] = 0.1 * rng.standard_normal(p.shape)
    x = rng.standard_normal((3, 1, 6, 6))
    y = np.array([0, 3, 1])

    def f():
        return softmax_cross_entropy(net.forward(x, cache=False), y)[0]

    _, g = softmax_cross_entropy(net.forward(x), y)
    gx = net.backward(g)
    grads = [g.copy() for g in net.grads]
    assert len(grads) == len(net.params) == 4
    np.testing.assert_allclose(gx, _num_grad(f, x), rtol=1e-5, atol=1e-9)
    for p, g in zip(net.params, grads):
        np.testing.assert_allclose(g, _num_grad(f, p), rtol=1e-5, atol=1e-9)
    # batches of 2 and 1 against one of 3 are different BLAS calls: equal up to float64 rounding
    np.testing.assert_allclose(net.predict(x, batch_size=2), net.forward(x), rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------- loss and dtypes
def test_softmax_cross_entropy_value_and_stability():
    rng = np.random.default_rng(8)
    z = rng.standard_normal((5, 4))
    y = np.array([0, 1, 2, 3, 1])
    loss, g = softmax_cross_entropy(z, y)
    prob = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    assert np.isclose(loss, -np.mean(np.log(prob[np.arange(5), y])), rtol=1e-12)
    np.testing.assert_allclose(g, (prob - np.eye(4)[y]) / 5, rtol=1e-12)
    big_loss, big_g = softmax_cross_entropy(z + 1e4, y)
    assert np.isclose(big_loss, loss, rtol=1e-9) and np.all(np.isfinite(big_g))
    loss32, g32 = softmax_cross_entropy((1e4 * z).astype(np.float32), y)
    assert np.isfinite(loss32) and g32.dtype == np.float32 and np.all(np.isfinite(g32))
    assert isinstance(loss32, float)


def test_float32_stays_float32():
    rng = np.random.default_rng(9)
    net = _small_net(rng, np.float32)
    x = rng.standard_normal((2, 1, 6, 6)).astype(np.float32)
    out = net.forward(x)
    assert out.dtype == np.float32
    _, g = softmax_cross_entropy(out, np.array([0, 1]))
    assert g.dtype == np.float32 and net.backward(g).dtype == np.float32
    assert all(gr.dtype == np.float32 for gr in net.grads)
    for layer in (AvgPool2d(2), MaxPool2d(2), ReLU()):
        assert layer.forward(x).dtype == np.float32
        assert layer.backward(np.ones(layer.forward(x).shape, np.float32)).dtype == np.float32
    assert patches(x, 3).dtype == np.float32
    # a float64 layer keeps float32 input in float32, and gives float64 gradients for its float64 weights
    conv = Conv2d(1, 2, 3, rng=0, dtype=np.float64)
    y = conv.forward(x)
    assert y.dtype == np.float32 and conv.backward(np.ones_like(y)).dtype == np.float32
    assert conv.grads[0].dtype == np.float64


# ----------------------------------------------------------------------------- training
def _blobs(seed, n=200):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.standard_normal((n, 1, 6, 6)) + np.where(y == 1, 0.7, -0.7)[:, None, None, None]
    return x.astype(np.float32), y


def _train(seed):
    x, y = _blobs(0)
    net = Sequential(Conv2d(1, 4, 3, rng=seed), ReLU(), MaxPool2d(2), Flatten(), Linear(16, 2, rng=seed + 1))
    rows = []
    hist = train_classifier(net, x, y, epochs=4, batch_size=20, lr=1e-2, rng=seed,
                            progress=lambda e, row: rows.append((e, row)))
    assert rows == [(r["epoch"], r) for r in hist]
    return net, hist, x, y


def test_train_classifier_learns_and_is_deterministic():
    net, hist, x, y = _train(3)
    assert [r["epoch"] for r in hist] == [1, 2, 3, 4] and set(hist[0]) == {"epoch", "loss", "train_acc"}
    assert accuracy(net, x, y, batch_size=64) > 0.95
    assert hist[-1]["loss"] < hist[0]["loss"]
    net2, hist2, _, _ = _train(3)
    assert hist2 == hist
    for a, b in zip(net.params, net2.params):
        np.testing.assert_array_equal(a, b)


def test_weight_decay_shrinks_weights():
    x, y = _blobs(1, 40)
    norms = []
    for wd in (0.0, 1.0):
        net = Sequential(Flatten(), Linear(36, 2, rng=0))
        train_classifier(net, x, y, epochs=2, batch_size=10, lr=1e-2, rng=0, weight_decay=wd)
        norms.append(np.linalg.norm(net[1].w))
    assert norms[1] < norms[0]


def _gauss_classes(seed, n, d=8, c=3, sep=1.0):
    g = np.random.default_rng(seed)
    centres = g.normal(size=(c, d)) * sep
    y = g.integers(0, c, n)
    return centres[y] + g.normal(size=(n, d)), y


def test_standardise_uses_the_training_statistics():
    g = np.random.default_rng(0)
    tr, te = g.normal(3.0, 2.0, (500, 4)), g.normal(3.0, 2.0, (50, 4))
    a, b = standardise(tr, te)
    np.testing.assert_allclose(a.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(a.std(axis=0), 1, atol=1e-5)
    np.testing.assert_allclose(b, (te - tr.mean(axis=0)) / (tr.std(axis=0) + 1e-6))
    assert a.dtype == np.float64 and standardise(tr, dtype=np.float32)[0].dtype == np.float32


@pytest.mark.parametrize("l2", [1e-2, 0.3])
def test_softmax_regression_reaches_the_optimum(l2):
    """At the returned weights the gradient of mean cross-entropy + ½·l2·‖w‖², computed here in float64,
    vanishes; the fit is deterministic."""
    x, y = _gauss_classes(0, 300)
    layer = fit_softmax_regression(x, y, l2=l2, max_iter=1000)
    z = x @ layer.w.T.astype(np.float64) + layer.b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    gw, gb = p.T @ x / len(y) + l2 * layer.w, p.mean(axis=0)
    assert np.abs(gw).max() < 1e-3 and np.abs(gb).max() < 1e-3
    assert np.linalg.norm(layer.w) > 0.05
    again = fit_softmax_regression(x, y, l2=l2, max_iter=1000)
    np.testing.assert_array_equal(layer.w, again.w)
    # a stronger penalty gives smaller weights
    assert np.linalg.norm(fit_softmax_regression(x, y, l2=10 * l2).w) < np.linalg.norm(layer.w)


def test_linear_probe_chooses_l2_on_held_out_training_samples():
    x, y = _gauss_classes(1, 1200, d=20, c=4, sep=0.6)
    xtr, ytr, xte, yte = x[:1000], y[:1000], x[1000:], y[1000:]
    res = linear_probe(xtr, ytr, xte, yte, l2=[1e-3, 1e2], validation=300)
    assert res["l2"] == 1e-3 and set(res["val_acc"]) == {1e-3, 1e2}
    assert res["val_acc"][1e-3] > res["val_acc"][1e2] and res["test_acc"] > 0.8
    # the test labels play no part in the fit
    assert linear_probe(xtr, ytr, xte, (yte + 1) % 4, l2=[1e-3, 1e2], validation=300)["l2"] == 1e-3
    single = linear_probe(xtr, ytr, xte, yte, l2=1e-3)
    assert single["val_acc"] == {} and single["l2"] == 1e-3 and single["test_acc"] > 0.8
    with pytest.raises(ValueError, match="validation"):
        linear_probe(xtr, ytr, xte, yte, l2=[1e-3, 1e-2], validation=1000)
    with pytest.raises(ValueError, match="same n"):
        linear_probe(xtr, ytr, xte[:, :3], yte)
    with pytest.raises(ValueError, match="l2"):
        fit_softmax_regression(xtr, ytr, l2=-1.0)


# ----------------------------------------------------------------------------- errors
def test_error_messages():
    conv = Conv2d(2, 3, 3, rng=0)
    with pytest.raises(ValueError, match=r"x: expected a 4-d array .* got shape \(2, 5, 5\)"):
        conv.forward(np.zeros((2, 5, 5)))
    with pytest.raises(ValueError, match=r"x: expected 2 channels .* got shape \(1, 3, 5, 5\)"):
        conv.forward(np.zeros((1, 3, 5, 5)))
    with pytest.raises(ValueError, match="x: expected height and width >= k"):
        conv.forward(np.zeros((1, 2, 2, 5)))
    with pytest.raises(ValueError, match=r"labels: expected class indices in \[0, 2\], got values in \[0, 3\]"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"labels: expected class indices in \[0, 2\], got values in \[-1, 0\]"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0, -1]))
    with pytest.raises(ValueError, match="labels: expected an integer array"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"labels: expected shape \(2,\)"):
        softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="k: expected an integer >= 1, got 0"):
        Conv2d(1, 1, 0)
    with pytest.raises(ValueError, match="dtype: expected float32 or float64"):
        Linear(2, 2, dtype=np.int32)
    with pytest.raises(ValueError, match=r"x: expected shape \(N, 4\), got \(3, 5\)"):
        Linear(4, 2).forward(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="cols: expected shape"):
        fold_patches(np.zeros((3, 3)), (1, 1, 4, 4), 3)
    with pytest.raises(ValueError, match="gy: expected the forward output's shape"):
        conv.forward(np.zeros((1, 2, 5, 5)))
        conv.backward(np.zeros((1, 3, 2, 2)))
    with pytest.raises(RuntimeError, match="call forward"):
        MaxPool2d(2).backward(np.zeros((1, 1, 1, 1)))
    with pytest.raises(ValueError, match="lr: expected a learning rate > 0 when no optimizer"):
        train_classifier(Sequential(Flatten()), np.zeros((2, 2)), np.array([0, 1]), epochs=1, batch_size=1,
                         lr=None, rng=0)


def test_hard_sigmoid_dropout_mse_and_sgd():
    x = np.array([[-0.5, 0.2, 0.7, 1.4]])
    hs = HardSigmoid(1.0, 0.0)
    np.testing.assert_array_equal(hs.forward(x), [[0.0, 0.2, 0.7, 1.0]])
    np.testing.assert_array_equal(hs.backward(np.ones((1, 4))), [[0, 1, 1, 0]])
    np.testing.assert_allclose(HardSigmoid().forward(np.array([[-4.0, 0.0, 1.5, 4.0]])), [[0, 0.5, 0.75, 1]])
    _check_layer(HardSigmoid(), np.random.default_rng(0).uniform(-2.9, 2.9, (3, 4)))
    drop = Dropout(0.25, rng=0)
    big = np.ones((400, 500))
    y = drop.forward(big)
    assert abs((y == 0).mean() - 0.25) < 0.01 and np.allclose(y[y > 0], 4 / 3)
    np.testing.assert_array_equal(drop.backward(np.ones_like(big)), y)  # the same mask and scale
    np.testing.assert_array_equal(drop.forward(big, cache=False), big)  # inference: identity
    yv, d = np.array([[0.2, 0.9], [0.5, 0.1]]), np.array([[0.0, 1.0], [1.0, 0.0]])
    loss, g = mse_loss(yv, d, mask=np.array([[1, 1], [0, 1]]))
    assert loss == pytest.approx(0.5 * (0.04 + 0.01 + 0.01) / 2)
    np.testing.assert_allclose(g, [[0.1, -0.05], [0.0, 0.05]])
    p = np.array([1.0, 2.0])
    SGD(0.5).step([p], [np.array([2.0, -2.0])])
    np.testing.assert_array_equal(p, [0.0, 3.0])
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.0)
    with pytest.raises(ValueError, match="target: expected the outputs' shape"):
        mse_loss(yv, d[:1])


def test_initialisations():
    he, fan = Linear(400, 300, rng=0), Linear(400, 300, rng=0, init="fan_in")
    assert np.abs(he.w).max() <= np.sqrt(6 / 400) and np.abs(he.w).max() > 0.95 * np.sqrt(6 / 400)
    assert not he.b.any()
    assert np.abs(fan.w).max() <= 1 / 20 and np.abs(fan.b).max() <= 1 / 20 and np.abs(fan.b).max() > 0.04
    conv = Conv2d(2, 4, 3, rng=1, init="fan_in")
    assert np.abs(conv.w).max() <= 1 / np.sqrt(18) and conv.b.any()
    with pytest.raises(ValueError, match="init: expected one of he, fan_in"):
        Linear(3, 2, init="xavier")


def test_backward_without_input_gradient():
    """input_grad=False gives the same parameter gradients and skips the work below the lowest weights."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 1, 6, 6))
    grads = []
    for input_grad in (True, False):
        net = Sequential(Dropout(0.0), Conv2d(1, 2, 3, rng=1, dtype=np.float64), ReLU(), Flatten(),
                         Linear(32, 4, rng=2, dtype=np.float64))
        net.forward(x)
        out = net.backward(np.ones((3, 4)), input_grad=input_grad)
        assert (out is None) == (not input_grad)
        grads.append(net.grads)
    for a, b in zip(*grads):
        np.testing.assert_array_equal(a, b)


def test_softmax_cross_entropy_target_rows():
    """Target rows give the same loss and gradient as the labels they one-hot encode, and smoothed rows
    the expected mix; rows that do not sum to 1 are rejected."""
    z = np.random.default_rng(9).standard_normal((4, 3))
    y = np.array([0, 2, 1, 2])
    onehot = np.eye(3)[y]
    for a, b in zip(softmax_cross_entropy(z, y), softmax_cross_entropy(z, onehot)):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    smooth = 0.7 * onehot + 0.1
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss, g = softmax_cross_entropy(z, smooth)
    assert loss == pytest.approx(-(smooth * logp).sum(axis=1).mean())
    np.testing.assert_allclose(g, (np.exp(logp) - smooth) / 4)
    with pytest.raises(ValueError, match="sum to 1"):
        softmax_cross_entropy(z, onehot * 2)


# ------------------------------------------------------------------ max pooling: kernel and numpy twin
@pytest.mark.parametrize("k, s, pad", [(2, 2, 0), (3, 2, 0), (4, 2, 1), (3, 1, 1), (2, 1, 0), (5, 3, 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool_kernels_match_their_numpy_twin_bit_for_bit(k, s, pad, dtype):
    """Ties, NaN, −∞ and overlapping windows; gradients whose sums depend on the order of the adds
    (1e8, 1, −1e8), so only the twin's order of offsets gives the same bits."""
    from neuroemu._kernels import pool as K
    from tests.reference import pool as R

    rng = np.random.default_rng(k * 100 + s * 10 + pad)
    x = rng.integers(0, 4, (3, 2, 11, 9)).astype(dtype)  # many ties
    x[0, 0, 2, 3], x[1, 1, 0, 0], x[2, 0, 5, :] = np.nan, np.nan, -np.inf
    pool = MaxPool2d(k, s, pad)
    xp = pool._padded(x, -np.inf)
    ho, wo = pool._sizes(x)
    arg_k, arg_r = np.empty((3, 2, ho, wo), np.int16), np.empty((3, 2, ho, wo), np.int16)
    y_k, y_r = K.max_pool_forward(xp, k, s, ho, wo, arg_k), R.max_pool_forward(xp, k, s, ho, wo, arg_r)
    assert y_k.dtype == dtype and y_k.tobytes() == y_r.tobytes() and np.array_equal(arg_k, arg_r)
    assert K.max_pool_forward(xp, k, s, ho, wo, np.empty((0, 0, 0, 0), np.int16)).tobytes() == y_k.tobytes()
    gy = rng.choice(np.array([1e8, 1.0, -1e8, 0.5, -3.0], dtype), (3, 2, ho, wo))
    gx_k, gx_r = np.zeros(xp.shape, dtype), np.zeros(xp.shape, dtype)
    K.max_pool_backward(arg_k, gy, k, s, gx_k)
    R.max_pool_backward(arg_r, gy, k, s, gx_r)
    assert gx_k.tobytes() == gx_r.tobytes()
    ones = np.zeros(xp.shape, dtype)
    K.max_pool_backward(arg_k, np.ones_like(gy), k, s, ones)
    assert ones.sum() == gy.size  # every output's gradient lands once


def test_max_pool_keeps_integer_and_boolean_inputs():
    x = np.random.default_rng(3).integers(0, 9, (2, 3, 6, 6))
    np.testing.assert_array_equal(MaxPool2d(2).forward(x), x.reshape(2, 3, 3, 2, 3, 2).max(axis=(3, 5)))
    assert MaxPool2d(2).forward(x).dtype == x.dtype
    b = x > 6
    np.testing.assert_array_equal(MaxPool2d(3, 3).forward(b), b.reshape(2, 3, 2, 3, 2, 3).any(axis=(3, 5)))
    assert MaxPool2d(2, pad=1).forward(x).dtype == np.float64  # −∞ padding needs a float
    f = np.random.default_rng(4).standard_normal((2, 3, 6, 6))
    for dtype in (np.float16, ">f4", ">f8"):  # dtypes numba does not take: computed exactly, given back as they came
        y = MaxPool2d(2).forward(f.astype(dtype))
        assert y.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(y, f.astype(dtype).reshape(2, 3, 3, 2, 3, 2).max(axis=(3, 5)))


def _with_subnormals(shape, dtype, rng):
    """Normal values, zeros, and ±subnormals (about a fifth each of the last two)."""
    a = rng.standard_normal(shape).astype(dtype)
    tiny = np.finfo(dtype).tiny
    which = rng.random(shape)
    a[which < 0.2] = 0
    sub = (which >= 0.2) & (which < 0.4)
    a[sub] = (rng.uniform(-0.99, 0.99, shape) * tiny).astype(dtype)[sub]
    return a


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_subnormal_kernels_match_their_numpy_twin(dtype):
    """count_subnormal counts the nonzero entries below the smallest normal number (not zeros, not
    ±tiny itself); flush_subnormal zeroes exactly those, like its twin, and keeps the rest to the bit."""
    from neuroemu._kernels.optim import count_subnormal, flush_subnormal
    from tests.reference.optim import count_subnormal as count_twin
    from tests.reference.optim import flush_subnormal as flush_twin

    tiny = np.finfo(dtype).tiny
    a = _with_subnormals(1000, dtype, np.random.default_rng(3))
    a[:4] = [tiny, -tiny, np.inf, -0.0]
    expected = int(np.count_nonzero((a != 0) & (np.abs(a) < tiny)))
    assert expected > 150 and count_subnormal(a) == count_twin(a) == expected
    b, c = a.copy(), a.copy()
    flush_subnormal(b)
    flush_twin(c)
    assert b.tobytes() == c.tobytes()
    assert count_subnormal(b) == 0 and np.all(b[np.abs(a) >= tiny] == a[np.abs(a) >= tiny])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weight_layers_flush_subnormal_errors_in_a_copy(dtype):
    """Linear and Conv2d give the gradients of gy with its subnormal entries set to zero, and leave the
    caller's gy as it was; a gy without subnormals goes in as it is."""
    from neuroemu.nn import _normal

    rng = np.random.default_rng(5)
    for layer, x_shape, y_shape in ((Linear(6, 5, rng=1, dtype=dtype), (4, 6), (4, 5)),
                                    (Conv2d(2, 3, 3, pad=1, rng=2, dtype=dtype), (2, 2, 5, 5), (2, 3, 5, 5))):
        x = rng.standard_normal(x_shape).astype(dtype)
        gy = _with_subnormals(y_shape, dtype, rng)
        gy[0] = np.finfo(dtype).tiny * dtype(0.5)  # a sample whose errors are all subnormal
        before = gy.copy()
        flushed = np.where(np.abs(gy) < np.finfo(dtype).tiny, dtype(0), gy)
        results = []
        for g in (gy, flushed):
            layer.forward(x)
            gx = layer.backward(g)
            results.append([gx, *layer.grads])
        assert gy.tobytes() == before.tobytes()
        for a, b in zip(*results):
            assert a.tobytes() == b.tobytes()
        assert np.all(results[0][0][0] == 0)  # that sample's input gradient
    normal = rng.standard_normal((3, 4)).astype(dtype)
    assert _normal(normal) is normal
