"""The small inline kernels that the larger ones are built from, each against its plain form."""

import math

import numpy as np

from neuroemu._kernels import device as D
from neuroemu._kernels import events as E
from neuroemu._kernels import rng as R
from neuroemu._kernels import sampling as S
from neuroemu._kernels.analog import normal_from_hash
from tests.test_sampling import CHAINS, N, kernel_case, run_kernel


def test_block_splits_a_range_into_equal_blocks():
    for n in (0, 1, 7, 64, 1001):
        for nk in (1, 3, 8):
            starts = [E._block(k, nk, n) for k in range(nk + 1)]
            assert starts == [(k * n) // nk for k in range(nk + 1)]
            assert starts[0] == 0 and starts[-1] == n and starts == sorted(starts)


def test_grown_keeps_the_first_entries():
    a = np.arange(10, dtype=np.int32)
    b = E.grown(a, 6, 25)
    assert b.dtype == a.dtype and b.size == 25
    np.testing.assert_array_equal(b[:6], a[:6])


def test_sqrt_count_is_sqrt():
    for n in range(200):
        assert D._sqrt_count(n) == math.sqrt(float(n))


def test_normal_from_hash_is_normal_k():
    k = R.key(12345, 7)
    for b in range(0, 200_000, 7):  # enough draws to reach the ziggurat's slow path
        assert normal_from_hash(k, b, np.uint64(R.hash_k(k, b))) == R.normal_k(k, b)


def test_pulse_synapse_is_pulse_tile_on_one_synapse():
    from neuroemu.hardware.crossbar import Tile

    counts = np.array([[2, 0, -3], [0, 1, 0]], np.int32)
    for card in ("pcm_nandakumar2018", "linear_step", "rram_gong2018"):
        whole, one = Tile(2, 3, card, rng=4), Tile(2, 3, card, rng=4)
        whole.t = one.t = 5.0
        seed = 99
        start = np.array([0, 1, 2, 0, 1, 2], np.int32)
        D.pulse_tile(whole.g, whole.p, whole.tprog, whole.npulse, whole.up, whole.down, whole.lo, whole.hi,
                     whole.stuck, whole.nu, counts.reshape(-1), start, whole.n_devices, not whole.differential,
                     whole.law, whole.prm, seed, whole.t)
        for k, n in enumerate(counts.reshape(-1)):
            if n:
                D.pulse_synapse(one.g, one.p, one.tprog, one.npulse, one.up, one.down, one.lo, one.hi, one.stuck,
                                one.nu, k, n, start[k], one.n_synapses, one.n_devices, not one.differential,
                                one.law, one.prm, seed, one.t)
        for a, b in ((whole.g, one.g), (whole.p, one.p), (whole.tprog, one.tprog), (whole.npulse, one.npulse)):
            np.testing.assert_array_equal(a, b)
        assert whole.npulse.sum() == np.abs(counts).sum()


def test_chain_run_is_one_chain_of_sampling_run():
    args, state = kernel_case(True, 3, True)
    steps, t0, every = 60, 5, 4
    want = run_kernel(steps, t0, every, args, state)
    v, ge, gi, r, fired, since, gap = (a.copy() for a in state)
    rec = np.zeros((steps // every, CHAINS, N), np.uint8)
    counts = np.zeros((CHAINS, N), np.int64)
    for b in range(CHAINS):
        S._chain_run(b, steps, t0, every, *args, v, ge, gi, r, fired, since, gap, rec, counts)
    for a, w in zip((v, ge, gi, r, fired, since, gap, rec, counts), want):
        np.testing.assert_array_equal(a, w)
