"""compactcortex.data.nwb.from_nwb on small NWB files written here, with known spike counts."""
from __future__ import annotations

import datetime
import sys

import numpy as np
import pytest

pynwb = pytest.importorskip("pynwb")

from pynwb import NWBHDF5IO, NWBFile  # noqa: E402
from pynwb.base import Images, ImageReferences  # noqa: E402
from pynwb.epoch import TimeIntervals  # noqa: E402
from pynwb.image import GrayscaleImage, IndexSeries, OpticalSeries, RGBImage  # noqa: E402

from compactcortex.data.nwb import from_nwb  # noqa: E402

W0, W1 = 0.05, 0.15  # the default window
# image shown at each presentation, interleaved; repeats per image 0..4: 3, 2, 4, 2, 3
SHOWN = [2, 0, 4, 1, 2, 3, 0, 2, 4, 1, 3, 0, 2, 4]
REPEATS = [3, 2, 4, 2, 3]
ONSETS = [10.0 + 1.0 * p for p in range(len(SHOWN))]  # 1 s apart: windows never overlap
UNIT_IDS = [7, 3, 11]
N_IMAGES = 5


def _k(u: int, p: int) -> int:
    """Spikes of unit u inside the counting window of presentation p (0..4, zeros included)."""
    return (3 * u + 2 * p + u * p) % 5


def _spikes(u: int, onsets=ONSETS, w0=W0, w1=W1) -> list[float]:
    """Unit u's spike times: _k(u, p) spikes inside each window (the first one exactly on the
    inclusive start), plus spikes that must not count: exactly on the exclusive end, just
    before the start, just after the end, and before onset."""
    st = []
    for p, t in enumerate(onsets):
        lo, hi = t + w0, t + w1  # same float64 arithmetic as the reader
        k = _k(u, p)
        st += [lo + (hi - lo) * j / (k + 1) for j in range(k)]  # j = 0: exactly lo
        st += [hi, lo - 1e-4, hi + 1e-4, t - 0.2, t + 0.5]
    return sorted(st)


def _images(n=N_IMAGES, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)


def _expected(shown=SHOWN, onsets=ONSETS, units=(0, 1, 2), n_images=N_IMAGES):
    """raw and responses built by plain loops from the construction."""
    chrono = sorted(range(len(shown)), key=lambda p: onsets[p])
    per_image = [[p for p in chrono if shown[p] == i] for i in range(n_images)]
    r = max(len(ps) for ps in per_image)
    raw = np.full((len(units), n_images, r), np.nan)
    resp = np.zeros((len(units), n_images))
    for a, u in enumerate(units):
        for i, ps in enumerate(per_image):
            for j, p in enumerate(ps):
                raw[a, i, j] = _k(u, p)
            resp[a, i] = sum(_k(u, p) for p in ps) / len(ps) if ps else np.nan
    return raw, resp


def _nwbfile(session_id="S42"):
    return NWBFile(session_description="test", identifier="test-id", session_id=session_id,
                   session_start_time=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc))


def _write(path, *, images=None, layout="images_ordered", table="presentations", column="image_index",
           shown=SHOWN, onsets=ONSETS, units=True, spikes=None, images_name="images", rows=None,
           session_id="S42"):
    """Write a test NWB file; returns the image array stored (in index order)."""
    f = _nwbfile(session_id)
    imgs = _images() if images is None else images
    if units:
        for u, uid in enumerate(UNIT_IDS):
            f.add_unit(spike_times=_spikes(u, onsets) if spikes is None else spikes[u], id=uid)
    if layout == "images_ordered":
        # names deliberately out of step with the order: index i is named img_{n-1-i}, added shuffled
        n = len(imgs)
        rgb = {i: (GrayscaleImage if imgs[i].ndim == 2 else RGBImage)(name=f"img_{n - 1 - i}", data=imgs[i])
               for i in range(n)}
        added = [rgb[i] for i in np.random.default_rng(1).permutation(n)]
        f.add_stimulus_template(Images(name=images_name, images=added, description="templates",
                                       order_of_images=ImageReferences(name="order_of_images",
                                                                       data=[rgb[i] for i in range(n)])))
    elif layout == "images_named":
        # no order_of_images: names im0, im5, im10, im15, im20 (natural order != lexicographic)
        rgb = [RGBImage(name=f"im{5 * i}", data=imgs[i]) for i in range(len(imgs))]
        f.add_stimulus_template(Images(name=images_name, images=rgb[::-1], description="templates"))
    elif layout == "optical":
        f.add_stimulus_template(OpticalSeries(name=images_name, data=imgs, unit="n.a.", rate=1.0,
                                              distance=0.5, field_of_view=[0.1, 0.1],
                                              orientation="lower left"))
    elif layout is not None:
        raise AssertionError(layout)
    order = range(len(shown)) if rows is None else rows
    if table == "trials":
        f.add_trial_column(column, "index of the image shown")
        for p in order:
            f.add_trial(start_time=onsets[p], stop_time=onsets[p] + 0.3, **{column: shown[p]})
    elif table is not None:
        ti = TimeIntervals(name=table, description="image presentations")
        ti.add_column(column, "index of the image shown")
        for p in order:
            ti.add_interval(start_time=onsets[p], stop_time=onsets[p] + 0.3, **{column: shown[p]})
        f.add_time_intervals(ti)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(f)
    return imgs


def _check(s, imgs, units=(0, 1, 2), **kw):
    raw, resp = _expected(units=units, **kw)
    assert s.images.dtype == np.uint8 and s.images.shape == imgs.shape
    np.testing.assert_array_equal(s.images, imgs)
    assert s.raw.shape == raw.shape
    np.testing.assert_array_equal(np.isnan(s.raw), np.isnan(raw))
    np.testing.assert_array_equal(s.raw, raw)  # NaNs compare equal in assert_array_equal
    np.testing.assert_array_equal(s.responses, resp)


# ---------------------------------------------------------------- layouts and counts


def test_images_with_order_of_images(tmp_path):
    imgs = _write(tmp_path / "a.nwb")
    s = from_nwb(tmp_path / "a.nwb")
    _check(s, imgs)
    assert s.name == "S42"
    # NaN padding exactly where an image had fewer presentations than the most shown one (4)
    assert [int((~np.isnan(s.raw[0, i])).sum()) for i in range(N_IMAGES)] == REPEATS
    assert s.raw.shape[2] == max(REPEATS)
    # the spike exactly at the window start counted, the one exactly at the end did not
    assert s.raw[1, 0, 0] == _k(1, 1) and _k(1, 1) > 0


def test_images_by_natural_name_order(tmp_path):
    imgs = _write(tmp_path / "a.nwb", layout="images_named")
    _check(from_nwb(tmp_path / "a.nwb", name="mine"), imgs)
    assert from_nwb(tmp_path / "a.nwb", name="mine").name == "mine"


def test_optical_series_frames(tmp_path):
    imgs = _write(tmp_path / "a.nwb", layout="optical", images_name="movie")
    _check(from_nwb(tmp_path / "a.nwb", images="movie"), imgs)


def test_trials_table_and_custom_column(tmp_path):
    imgs = _write(tmp_path / "a.nwb", table="trials", column="stim_id")
    _check(from_nwb(tmp_path / "a.nwb", stimulus="trials", image_column="stim_id"), imgs)


def test_repeats_in_chronological_order(tmp_path):
    # table rows written in reverse; raw's repeat axis still follows onset time
    imgs = _write(tmp_path / "a.nwb", rows=list(range(len(SHOWN)))[::-1])
    _check(from_nwb(tmp_path / "a.nwb"), imgs)


def test_index_series_linked_images(tmp_path):
    f = _nwbfile()
    imgs = _images()
    for u, uid in enumerate(UNIT_IDS):
        f.add_unit(spike_times=_spikes(u), id=uid)
    rgb = [RGBImage(name=f"frame{i}", data=imgs[i]) for i in range(N_IMAGES)]
    tmpl = Images(name="templates", images=rgb, description="t",
                  order_of_images=ImageReferences(name="order_of_images", data=rgb))
    f.add_stimulus_template(tmpl)
    f.add_stimulus(IndexSeries(name="presentations", data=np.array(SHOWN, dtype=np.uint32),
                               indexed_images=tmpl, unit="N/A", timestamps=ONSETS))
    with NWBHDF5IO(str(tmp_path / "a.nwb"), "w") as io:
        io.write(f)
    _check(from_nwb(tmp_path / "a.nwb"), imgs)  # no container named "images": the linked one
    _check(from_nwb(tmp_path / "a.nwb", images="templates"), imgs)


def test_unit_subset_in_given_order(tmp_path):
    imgs = _write(tmp_path / "a.nwb")
    s = from_nwb(tmp_path / "a.nwb", units=[UNIT_IDS[2], UNIT_IDS[0]])
    _check(s, imgs, units=(2, 0))
    assert s.num_neurons == 2


def test_window_boundaries(tmp_path):
    # dyadic times, exact in binary: window [t + 0.25, t + 0.5)
    onsets = [float(p) for p in range(len(SHOWN))]
    spikes = [
        [t + 0.25 for t in onsets],  # on the inclusive start: counts 1 each
        [t + 0.5 for t in onsets],  # on the exclusive end: counts 0
        [x for t in onsets for x in (np.nextafter(t + 0.5, -np.inf), np.nextafter(t + 0.25, -np.inf))],
    ]  # last representable time inside the window counts, the one just before the start does not
    _write(tmp_path / "a.nwb", onsets=onsets, spikes=spikes)
    s = from_nwb(tmp_path / "a.nwb", window=(0.25, 0.5))
    shown = np.isfinite(s.raw[0])
    assert shown.sum() == len(SHOWN)
    assert np.all(s.raw[0][shown] == 1) and np.all(s.raw[1][shown] == 0) and np.all(s.raw[2][shown] == 1)
    np.testing.assert_array_equal(s.responses, [[1] * 5, [0] * 5, [1] * 5])
    # the default window (0.05, 0.15) sees none of these spikes
    assert np.all(from_nwb(tmp_path / "a.nwb").responses == 0)


def test_drop_unshown(tmp_path):
    shown = [s for s in SHOWN if s not in (1, 3)]
    onsets = ONSETS[:len(shown)]
    imgs = _write(tmp_path / "a.nwb", shown=shown, onsets=onsets)
    with pytest.raises(ValueError, match=r"never shown.*\[1, 3\]"):
        from_nwb(tmp_path / "a.nwb")
    s = from_nwb(tmp_path / "a.nwb", drop_unshown=True)
    raw, resp = _expected(shown=shown, onsets=onsets)
    keep = [0, 2, 4]
    np.testing.assert_array_equal(s.images, imgs[keep])
    np.testing.assert_array_equal(s.raw, raw[:, keep])
    np.testing.assert_array_equal(s.responses, resp[:, keep])


def test_resize(tmp_path):
    colours = np.array([[10, 200, 30], [0, 0, 0], [255, 255, 255], [1, 2, 3], [90, 80, 70]], np.uint8)
    small = np.broadcast_to(colours[:, None, None, :], (5, 64, 48, 3)).copy()  # flat colours survive resizing
    _write(tmp_path / "a.nwb", images=small)
    with pytest.raises(ValueError, match=r"\(64, 48, 3\).*112x112.*resize=True"):
        from_nwb(tmp_path / "a.nwb")
    s = from_nwb(tmp_path / "a.nwb", resize=True)
    np.testing.assert_array_equal(s.images, np.broadcast_to(colours[:, None, None, :], (5, 112, 112, 3)))

    gray = np.stack([np.full((112, 112), 17 * i, np.uint8) for i in range(5)])
    _write(tmp_path / "g.nwb", images=gray)
    with pytest.raises(ValueError, match=r"\(112, 112\)"):
        from_nwb(tmp_path / "g.nwb")
    s = from_nwb(tmp_path / "g.nwb", resize=True)
    np.testing.assert_array_equal(s.images, np.broadcast_to((17 * np.arange(5, dtype=np.uint8))[:, None, None, None],
                                                            (5, 112, 112, 3)))


# ---------------------------------------------------------------- errors


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        from_nwb(tmp_path / "nope.nwb")


def test_not_nwb(tmp_path):
    (tmp_path / "t.nwb").write_text("hello")
    with pytest.raises(ValueError, match="not an NWB file"):
        from_nwb(tmp_path / "t.nwb")
    import h5py

    with h5py.File(tmp_path / "h.nwb", "w") as f:
        f["x"] = 1
    with pytest.raises(ValueError, match="not an NWB file"):
        from_nwb(tmp_path / "h.nwb")


def test_no_units(tmp_path):
    _write(tmp_path / "a.nwb", units=False)
    with pytest.raises(ValueError, match="no units table"):
        from_nwb(tmp_path / "a.nwb")


def test_unknown_unit_ids(tmp_path):
    _write(tmp_path / "a.nwb")
    with pytest.raises(ValueError, match=r"unit ids \[99\] not in the units table.*7, 3, 11"):
        from_nwb(tmp_path / "a.nwb", units=[7, 99])


def test_missing_stimulus_table(tmp_path):
    _write(tmp_path / "a.nwb", table="flashes")
    with pytest.raises(ValueError, match=r"no presentation table 'presentations'.*intervals/flashes"):
        from_nwb(tmp_path / "a.nwb")
    with pytest.raises(ValueError, match=r"no presentation table 'trials'"):
        from_nwb(tmp_path / "a.nwb", stimulus="trials")


def test_missing_column(tmp_path):
    _write(tmp_path / "a.nwb", column="stim_id")
    with pytest.raises(ValueError, match=r"no column 'image_index'.*stim_id"):
        from_nwb(tmp_path / "a.nwb")


def test_indices_out_of_range(tmp_path):
    _write(tmp_path / "a.nwb", shown=SHOWN[:-2] + [5, -1])
    with pytest.raises(ValueError, match=r"out of range \[-1, 5\].*5 images"):
        from_nwb(tmp_path / "a.nwb")


def test_missing_images_container(tmp_path):
    _write(tmp_path / "a.nwb", images_name="templates")
    with pytest.raises(ValueError, match=r"no images container 'images'.*stimulus_template/templates \(Images\)"):
        from_nwb(tmp_path / "a.nwb")
    _write(tmp_path / "b.nwb", layout=None)
    with pytest.raises(ValueError, match=r"no images container 'images' \(containers here: none\)"):
        from_nwb(tmp_path / "b.nwb")


def test_bad_window(tmp_path):
    _write(tmp_path / "a.nwb")
    with pytest.raises(ValueError, match="window"):
        from_nwb(tmp_path / "a.nwb", window=(0.15, 0.05))


def test_missing_pynwb_message(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynwb", None)  # makes `import pynwb` raise ImportError
    with pytest.raises(ImportError, match=r'pip install "compactcortex\[nwb\]"'):
        from_nwb(tmp_path / "a.nwb")


def test_session_id_that_is_not_a_file_name_is_refused(tmp_path):
    # the session name becomes images_<name>.zip etc.: "../x" would write outside the folder
    _write(tmp_path / "evil.nwb", session_id="../../escaped")
    with pytest.raises(ValueError, match=r"evil.nwb: session_id '../../escaped' cannot be used as a file "
                                         r"name.*pass name="):
        from_nwb(tmp_path / "evil.nwb")
    s = from_nwb(tmp_path / "evil.nwb", name="ok_name")
    assert s.name == "ok_name"


def test_images_declaring_too_many_pixels_are_refused_before_reading(tmp_path, monkeypatch):
    from compactcortex.data import nwb

    _write(tmp_path / "f.nwb")
    monkeypatch.setattr(nwb, "MAX_DECODE_PIXELS", 100)  # the file's 112x112 templates now count as huge
    with pytest.raises(ValueError, match=r"f.nwb: images container 'images' image .* declares data of shape \(112, 112, 3\)"):
        from_nwb(tmp_path / "f.nwb")
