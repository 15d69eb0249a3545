"""Every vector kernel against the scalar C++ reference, on odd sizes."""
import numpy as np
import pytest

from compactcortex import _engine as E

VECTOR_ISAS = [i for i in E.available_isas() if i != "reference"]


def round_up(v, m):
    return (v + m - 1) // m * m


class KernelTester:
    """One tester for every kernel family (XNNPACK's habit): a kernel of ``isa`` runs on buffers
    whose channels are padded to the vector width, the scalar reference on the real channels;
    :meth:`check` compares the real channels and requires the padded ones to stay zero."""

    def __init__(self, isa: str, channels: int):
        self.isa, self.C = isa, channels
        self.width = E.vector_width(isa)
        self.Cp = round_up(channels, self.width)

    def pad(self, a: np.ndarray) -> np.ndarray:
        """``a`` (..., C) with zero channels appended up to Cp, float32 C-contiguous."""
        out = np.zeros((*a.shape[:-1], self.Cp), np.float32)
        out[..., :self.C] = a
        return out

    def vec_major(self, w: np.ndarray, width: int | None = None) -> np.ndarray:
        """(C, K) -> vector-major [Cp/width][K][width], flattened (``width=1``: the reference's layout)."""
        width = self.width if width is None else width
        wp = np.zeros((round_up(len(w), width), w.shape[1]), np.float32)
        wp[:len(w)] = w
        return np.ascontiguousarray(wp.reshape(-1, width, w.shape[1]).transpose(0, 2, 1)).ravel()

    def out(self, *shape: int) -> np.ndarray:
        """A padded result buffer filled with NaN (every element the kernel skips shows)."""
        return np.full((*shape, self.Cp), np.nan, np.float32)

    def check(self, got: np.ndarray, ref: np.ndarray, rtol: float = 1e-5, atol: float = 1e-4,
              of_scale: float | None = None) -> None:
        """``got`` (..., Cp) against ``ref`` (..., C): elementwise, or within ``of_scale`` x max|ref|."""
        if of_scale is None:
            np.testing.assert_allclose(got[..., :self.C], ref, rtol=rtol, atol=atol)
        else:
            assert np.abs(got[..., :self.C] - ref).max() <= of_scale * max(np.abs(ref).max(), 1e-6), self.isa
        assert np.all(got[..., self.C:] == 0), "padded channels must stay zero"


@pytest.mark.parametrize("isa", VECTOR_ISAS)
@pytest.mark.parametrize("channels", [1, 3, 7, 16, 100])
@pytest.mark.parametrize("wout", [1, 5, 13, 112])
def test_conv0_row(isa, channels, wout):
    rng = np.random.default_rng(channels * 1000 + wout)
    t = KernelTester(isa, channels)
    S = (wout + 4) * 3
    inp = rng.normal(size=5 * S).astype(np.float32)
    w = rng.normal(size=(channels, 75)).astype(np.float32)
    b = rng.normal(size=channels).astype(np.float32)
    got, ref = t.out(wout), np.zeros((wout, channels), np.float32)
    E._testing.kernel_conv0_row(isa, inp, S, wout, t.vec_major(w), t.pad(b), t.Cp, got.ravel())
    E._testing.kernel_conv0_row("reference", inp, S, wout, t.vec_major(w, 1), b, channels, ref.ravel())
    t.check(got, ref)
    if ref.size >= 50:
        assert (ref == 0).any() and (ref > 0).any(), "test data should exercise the ReLU"


@pytest.mark.parametrize("isa", VECTOR_ISAS)
@pytest.mark.parametrize("channels", [1, 3, 100])
@pytest.mark.parametrize("stride,wout", [(1, 28), (2, 56), (1, 3), (2, 7)])
def test_dw_row(isa, channels, stride, wout):
    rng = np.random.default_rng(channels + wout)
    t = KernelTester(isa, channels)
    in_w = stride * (wout - 1) + 5
    rows = rng.normal(size=(5, in_w, channels)).astype(np.float32)
    dw = rng.normal(size=(25, channels)).astype(np.float32)
    got, ref = t.out(wout), np.zeros((wout, channels), np.float32)
    E._testing.kernel_dw_row(isa, t.pad(rows).ravel(), in_w * t.Cp, stride, wout, t.pad(dw).ravel(), t.Cp, got.ravel())
    E._testing.kernel_dw_row("reference", rows.ravel(), in_w * channels, stride, wout, dw.ravel(), channels, ref.ravel())
    t.check(got, ref)
    # and the reference itself against numpy
    expect = sum(rows[ky, kx: kx + stride * (wout - 1) + 1: stride] * dw[ky * 5 + kx]
                 for ky in range(5) for kx in range(5))
    np.testing.assert_allclose(ref, expect, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("isa", VECTOR_ISAS)
@pytest.mark.parametrize("k,n", [(1, 1), (3, 3), (7, 100), (100, 7), (48, 60)])
@pytest.mark.parametrize("m", [1, 7, 56])
def test_pw_row(isa, k, n, m):
    rng = np.random.default_rng(k * n + m)
    t = KernelTester(isa, n)
    lda = k + 3  # rows of a are padded, as in the engine
    a = rng.normal(size=(m, lda)).astype(np.float32)
    B = rng.normal(size=(n, k)).astype(np.float32)
    b = rng.normal(size=n).astype(np.float32)
    got, ref = t.out(m), np.zeros((m, n), np.float32)
    E._testing.kernel_pw_row(isa, a.ravel(), m, k, lda, t.vec_major(B), t.pad(b), t.Cp, got.ravel(), t.Cp)
    E._testing.kernel_pw_row("reference", a.ravel(), m, k, lda, B.ravel(), b, n, ref.ravel(), n)
    t.check(got, ref)
    np.testing.assert_allclose(ref, np.maximum(a[:, :k] @ B.T + b, 0), rtol=1e-4, atol=1e-4)


def wino_weights(w, width):
    """Winograd F(4x4,5x5) weights G w G^T, (C,3,5,5) -> [C/width][8][8][3][width]."""
    pts = [0, 1, -1, 2, -2, 0.5, -0.5]
    G = np.zeros((8, 5))
    for i, x in enumerate(pts):
        G[i] = [x**k / np.prod([x - y for j, y in enumerate(pts) if j != i]) for k in range(5)]
    G[7, 4] = 1
    V = np.einsum("iy,ocyx,jx->oijc", G, w.astype(np.float64), G)
    Vp = np.zeros((round_up(len(w), width), 8, 8, 3))
    Vp[:len(w)] = V
    return np.ascontiguousarray(Vp.reshape(-1, width, 8, 8, 3).transpose(0, 2, 3, 4, 1)).astype(np.float32).ravel()


@pytest.mark.parametrize("isa", [*VECTOR_ISAS, "reference"])
@pytest.mark.parametrize("channels", [1, 3, 7, 16, 100])
@pytest.mark.parametrize("wout", [4, 12, 112])
def test_wino0_band_matches_direct_convolution(isa, channels, wout):
    """Winograd F(4x4,5x5) rows against the (reference) direct convolution of the same rows."""
    rng = np.random.default_rng(channels + wout)
    t = KernelTester(isa, channels)
    S = (wout + 4) * 3
    inp = rng.normal(0, 60, size=8 * S).astype(np.float32)
    w = rng.normal(0, 0.02, size=(channels, 3, 5, 5)).astype(np.float32)
    b = rng.normal(size=channels).astype(np.float32)
    got = t.out(4, wout)
    scratch = np.zeros(E._testing.wino0_scratch_floats(wout, t.width), np.float32)
    E._testing.kernel_wino0_band(isa, inp, S, wout, wino_weights(w, t.width), t.pad(b), t.Cp, got.ravel(), scratch)
    wd = np.ascontiguousarray(w.transpose(0, 2, 3, 1).reshape(channels, 75))  # [c][ky][kx][ci]
    for p in range(4):
        ref = np.zeros((wout, channels), np.float32)
        E._testing.kernel_conv0_row("reference", inp[p * S:], S, wout, wd.ravel(), b, channels, ref.ravel())
        t.check(got[p], ref, of_scale=1e-5)
