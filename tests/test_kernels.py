"""Every vector kernel against the scalar C++ reference, on odd sizes."""
import numpy as np
import pytest

from compactcortex import _engine as E

VECTOR_ISAS = [i for i in E.available_isas() if i != "reference"]


def round_up(v, m):
    return (v + m - 1) // m * m


def vec_major(w, width):
    """(C, K) -> vector-major [C/width][K][width] (C padded with zeros)."""
    C, K = w.shape
    Cp = round_up(C, width)
    wp = np.zeros((Cp, K), np.float32)
    wp[:C] = w
    return np.ascontiguousarray(wp.reshape(Cp // width, width, K).transpose(0, 2, 1)).ravel(), Cp


@pytest.mark.parametrize("isa", VECTOR_ISAS)
@pytest.mark.parametrize("channels", [1, 3, 7, 16, 100])
@pytest.mark.parametrize("wout", [1, 5, 13, 112])
def test_conv0_row(isa, channels, wout):
    rng = np.random.default_rng(channels * 1000 + wout)
    width = E.vector_width(isa)
    S = (wout + 4) * 3
    inp = rng.normal(size=5 * S).astype(np.float32)
    w = rng.normal(size=(channels, 75)).astype(np.float32)
    b = rng.normal(size=channels).astype(np.float32)
    outs = {}
    for name, wd in ((isa, width), ("reference", 1)):
        wp, Cp = vec_major(w, wd)
        bp = np.zeros(Cp, np.float32)
        bp[:channels] = b
        out = np.full(wout * Cp, np.nan, np.float32)
        E._testing.kernel_conv0_row(name, inp, S, wout, wp, bp, Cp, out)
        outs[name] = out.reshape(wout, Cp)
    got, ref = outs[isa], outs["reference"]
    np.testing.assert_allclose(got[:, :channels], ref, rtol=1e-5, atol=1e-4)
    assert np.all(got[:, channels:] == 0), "padded channels must stay zero"
    if ref.size >= 50:
        assert (ref == 0).any() and (ref > 0).any(), "test data should exercise the ReLU"


@pytest.mark.parametrize("isa", VECTOR_ISAS)
@pytest.mark.parametrize("channels", [1, 3, 100])
@pytest.mark.parametrize("stride,wout", [(1, 28), (2, 56), (1, 3), (2, 7)])
def test_dw_row(isa, channels, stride, wout):
    rng = np.random.default_rng(channels + wout)
    width = E.vector_width(isa)
    Cp = round_up(channels, width)
    in_w = stride * (wout - 1) + 5
    rows = np.zeros((5, in_w, Cp), np.float32)
    rows[:, :, :channels] = rng.normal(size=(5, in_w, channels))
    dw = np.zeros((25, Cp), np.float32)
    dw[:, :channels] = rng.normal(size=(25, channels))
    got = np.full((wout, Cp), np.nan, np.float32)
    E._testing.kernel_dw_row(isa, rows.ravel(), in_w * Cp, stride, wout, dw.ravel(), Cp, got.ravel())
    ref = np.zeros((wout, channels), np.float32)
    E._testing.kernel_dw_row("reference", np.ascontiguousarray(rows[:, :, :channels]).ravel(), in_w * channels,
                     stride, wout, np.ascontiguousarray(dw[:, :channels]).ravel(), channels, ref.ravel())
    np.testing.assert_allclose(got[:, :channels], ref, rtol=1e-5, atol=1e-4)
    # and the reference itself against numpy
    expect = sum(rows[ky, kx: kx + stride * (wout - 1) + 1: stride, :channels] * dw[ky * 5 + kx, :channels]
                 for ky in range(5) for kx in range(5))
    np.testing.assert_allclose(ref, expect, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("isa", VECTOR_ISAS)
@pytest.mark.parametrize("k,n", [(1, 1), (3, 3), (7, 100), (100, 7), (48, 60)])
@pytest.mark.parametrize("m", [1, 7, 56])
def test_pw_row(isa, k, n, m):
    rng = np.random.default_rng(k * n + m)
    width = E.vector_width(isa)
    lda = k + 3  # rows of a are padded, as in the engine
    a = rng.normal(size=(m, lda)).astype(np.float32)
    B = rng.normal(size=(n, k)).astype(np.float32)
    b = rng.normal(size=n).astype(np.float32)
    Bp, Np = vec_major(B, width)
    bp = np.zeros(Np, np.float32)
    bp[:n] = b
    got = np.full((m, Np), np.nan, np.float32)
    E._testing.kernel_pw_row(isa, a.ravel(), m, k, lda, Bp, bp, Np, got.ravel(), Np)
    ref = np.zeros((m, n), np.float32)
    E._testing.kernel_pw_row("reference", a.ravel(), m, k, lda, B.ravel(), b, n, ref.ravel(), n)
    np.testing.assert_allclose(got[:, :n], ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(ref, np.maximum(a[:, :k] @ B.T + b, 0), rtol=1e-4, atol=1e-4)
    assert np.all(got[:, n:] == 0)


def wino_weights(w, width):
    """Winograd F(4x4,5x5) weights G w G^T, (C,3,5,5) -> [C/width][8][8][3][width]."""
    pts = [0, 1, -1, 2, -2, 0.5, -0.5]
    G = np.zeros((8, 5))
    for i, x in enumerate(pts):
        G[i] = [x**k / np.prod([x - y for j, y in enumerate(pts) if j != i]) for k in range(5)]
    G[7, 4] = 1
    V = np.einsum("iy,ocyx,jx->oijc", G, w.astype(np.float64), G)
    C = w.shape[0]
    Cp = round_up(C, width)
    Vp = np.zeros((Cp, 8, 8, 3))
    Vp[:C] = V
    return np.ascontiguousarray(Vp.reshape(Cp // width, width, 8, 8, 3).transpose(0, 2, 3, 4, 1)).astype(np.float32).ravel(), Cp


@pytest.mark.parametrize("isa", [*VECTOR_ISAS, "reference"])
@pytest.mark.parametrize("channels", [1, 3, 7, 16, 100])
@pytest.mark.parametrize("wout", [4, 12, 112])
def test_wino0_band_matches_direct_convolution(isa, channels, wout):
    """Winograd F(4x4,5x5) rows against the (reference) direct convolution of the same rows."""
    rng = np.random.default_rng(channels + wout)
    width = E.vector_width(isa)
    S = (wout + 4) * 3
    inp = rng.normal(0, 60, size=8 * S).astype(np.float32)
    w = rng.normal(0, 0.02, size=(channels, 3, 5, 5)).astype(np.float32)
    b = rng.normal(size=channels).astype(np.float32)
    V, Cp = wino_weights(w, width)
    bp = np.zeros(Cp, np.float32)
    bp[:channels] = b
    out = np.full((4, wout, Cp), np.nan, np.float32)
    scratch = np.zeros(E._testing.wino0_scratch_floats(wout, width), np.float32)
    E._testing.kernel_wino0_band(isa, inp, S, wout, V, bp, Cp, out.ravel(), scratch)
    wd = np.ascontiguousarray(w.transpose(0, 2, 3, 1).reshape(channels, 75))  # [c][ky][kx][ci]
    for p in range(4):
        ref = np.zeros(wout * channels, np.float32)
        E._testing.kernel_conv0_row("reference", inp[p * S:], S, wout, wd.ravel(), b, channels, ref)
        ref = ref.reshape(wout, channels)
        scale = max(np.abs(ref).max(), 1e-6)
        assert np.abs(out[p, :, :channels] - ref).max() <= 1e-5 * scale, (p, isa)
        assert np.all(out[p, :, channels:] == 0)
