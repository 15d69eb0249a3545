"""Build a :class:`~compactcortex.data.session.Session` from a Neurodata Without Borders (NWB) file.

Needs ``pynwb`` (``pip install "compactcortex[nwb]"``); it is imported only when
:func:`from_nwb` is called.

What is read:

* **Spikes**: the spike times of the file's Units table (``nwbfile.units``), in seconds on the
  file's common time base; all units in table order, or the ids given by ``units=[...]`` in
  that order. ``obs_intervals`` are not consulted.
* **Presentations**: one row per image presentation, with an onset time ``start_time``
  (seconds) and an integer column (``image_column``, default ``"image_index"``) saying which
  image was shown. Looked up by name: ``nwbfile.intervals[stimulus]`` (a TimeIntervals table;
  ``"trials"`` and ``"epochs"`` name those tables), else a table or an ``IndexSeries`` of that
  name in ``nwbfile.stimulus`` (for an IndexSeries the onsets are its timestamps and the image
  indices its data; ``image_column`` is not used). ``stop_time`` is ignored: the counting window
  is fixed relative to the onset.
* **Images**: the stimulus templates, found by name (``images``) in ``nwbfile.stimulus_template``,
  ``nwbfile.stimulus``, ``nwbfile.acquisition`` or any processing module, in that order:

  - an ``Images`` container of ``RGBImage`` s, indexed by its ``order_of_images`` when it has
    one, otherwise by image name in natural order (``img2`` before ``img10``);
  - an ``ImageSeries`` / ``OpticalSeries`` whose frames (data of shape (N, H, W, 3)) are the
    images, frame ``i`` being image ``i`` (external files are not supported).

  When no container has that name and the presentations are an ``IndexSeries`` linked to an
  ``Images`` container or an ``ImageSeries``, the linked one is used. Images must be 112x112
  RGB uint8, or ``resize=True`` converts them (Pillow: RGB conversion, bicubic resampling).

Responses: for every presentation and unit, the number of spikes ``t`` with
``start + window[0] <= t < start + window[1]`` (seconds; inclusive start, exclusive end). The
default window ``(0.05, 0.15)`` is a 100 ms bin starting 50 ms after image onset, which skips
most of V4's response latency and matches the published convention of spike counts per 100 ms
bin. ``raw[u, i, r]`` is unit ``u``'s count on the ``r``-th presentation of image ``i`` (in
chronological order), NaN-padded up to the largest number of repeats; ``responses`` is the mean
over repeats (NaNs ignored).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..constants import IMAGE_SIZE
from ..files import checked_name
from .image_files import MAX_DECODE_PIXELS
from .session import Session

__all__ = ["from_nwb"]

_INSTALL_HINT = 'reading NWB files needs pynwb: pip install "compactcortex[nwb]"'


def _import_pynwb():
    try:
        import pynwb
    except ImportError as e:
        raise ImportError(f"{_INSTALL_HINT} ({e})") from e
    return pynwb


def from_nwb(
    path: str | Path,
    *,
    name: str | None = None,
    units: Sequence[int] | None = None,
    stimulus: str = "presentations",
    images: str = "images",
    window: tuple[float, float] = (0.05, 0.15),
    image_column: str = "image_index",
    drop_unshown: bool = False,
    resize: bool = False,
) -> Session:
    """Read spikes, image presentations and image templates from an NWB file into a Session.

    Args:
        path: the ``.nwb`` (HDF5) file.
        name: session name; default the file's ``session_id``, else the file name without suffix.
        units: ids (``nwbfile.units.id``) of the units to keep, in the order wanted; default all.
        stimulus: name of the presentation table (``nwbfile.intervals[stimulus]``, ``"trials"``,
            ``"epochs"``) or of a table / IndexSeries in ``nwbfile.stimulus``.
        images: name of the image templates (an ``Images`` container or an ``ImageSeries``).
        window: (start, end) of the counting window in seconds after each onset; spikes at
            ``start`` count, spikes at ``end`` do not.
        image_column: the presentation table's column holding the 0-based image index.
        drop_unshown: drop images that were never presented (default: raise a ValueError).
        resize: convert images that are not 112x112 RGB with Pillow instead of raising.

    Returns:
        Session with ``images`` (N, 112, 112, 3) uint8, ``responses`` (units, N) float64 and
        ``raw`` (units, N, max repeats) float64, NaN-padded.

    Raises:
        ImportError: pynwb is not installed.
        ValueError: a missing file, a file that is not NWB, no units table or unknown unit ids,
            a missing presentation table or column, image indices out of range, a missing
            images container, images of the wrong shape or type, or images never shown.
    """
    pynwb = _import_pynwb()
    path = Path(path)
    w0, w1 = (float(x) for x in window)
    if not (np.isfinite(w0) and np.isfinite(w1) and w0 < w1):
        raise ValueError(f"window must be (start, end) seconds with start < end, got {tuple(window)}")
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        io = pynwb.NWBHDF5IO(str(path), "r")
    except Exception as e:
        raise ValueError(f"{path}: not an NWB file (cannot open it as NWB/HDF5: {e})") from None
    with io:
        try:
            nwbfile = io.read()
        except Exception as e:
            raise ValueError(f"{path}: not an NWB file ({type(e).__name__}: {e})") from None
        if not isinstance(nwbfile, pynwb.NWBFile):
            raise ValueError(f"{path}: not an NWB file (read a {type(nwbfile).__name__})")
        session_name = name if name is not None else (nwbfile.session_id or path.stem)
        try:  # before reading the data: a name that cannot become a file name is an early error
            checked_name(session_name, "name" if name is not None else
                         "session_id" if nwbfile.session_id else "file name")
        except ValueError as e:
            raise ValueError(f"{path}: {e}; pass name= to choose another") from None
        spikes = _read_units(path, nwbfile, units)
        onsets, shown, linked = _read_presentations(path, nwbfile, stimulus, image_column, pynwb)
        templates = _read_images(path, nwbfile, images, linked, resize, pynwb)

    if len(onsets) == 0:
        raise ValueError(f"{path}: presentation table {stimulus!r} has no presentations")
    if not np.all(np.isfinite(onsets)):
        raise ValueError(f"{path}: presentation table {stimulus!r} has NaN or infinite onset times "
                         f"(rows {_short(np.flatnonzero(~np.isfinite(onsets)).tolist())})")
    n_images = len(templates)
    bad = (shown < 0) | (shown >= n_images)
    if bad.any():
        vals = sorted(set(shown[bad].tolist()))
        raise ValueError(f"{path}: presentation table {stimulus!r} names image indices out of range "
                         f"{_short(vals)}; the images container {images!r} holds {n_images} images "
                         f"(valid indices 0..{n_images - 1})")

    # counts[u, p]: spikes of unit u in [onset_p + w0, onset_p + w1)
    lo, hi = onsets + w0, onsets + w1
    counts = np.empty((len(spikes), len(onsets)), dtype=np.float64)
    for u, st in enumerate(spikes):
        counts[u] = np.searchsorted(st, hi, side="left") - np.searchsorted(st, lo, side="left")

    # group presentations by image, repeats in chronological order
    order = np.lexsort((onsets, shown))
    img_sorted = shown[order]
    first = np.searchsorted(img_sorted, img_sorted, side="left")
    rank = np.arange(len(order)) - first
    reps = np.bincount(shown, minlength=n_images)
    unshown = np.flatnonzero(reps == 0)
    if len(unshown) and not drop_unshown:
        raise ValueError(f"{path}: images never shown in {stimulus!r}: {_short(unshown.tolist())} "
                         f"(of {n_images}); pass drop_unshown=True to drop them")
    raw = np.full((len(spikes), n_images, int(reps.max())), np.nan)
    raw[:, img_sorted, rank] = counts[:, order]
    keep = np.flatnonzero(reps > 0)
    raw, templates = raw[:, keep], templates[keep]
    responses = np.nanmean(raw, axis=2)  # every kept image has at least one presentation
    return Session(str(session_name), templates, responses, raw)


def _short(vals: Sequence[Any], n: int = 20) -> str:
    vals = list(vals)
    s = ", ".join(str(v) for v in vals[:n])
    return f"[{s}{', ...' if len(vals) > n else ''}] ({len(vals)} in all)" if len(vals) > n else f"[{s}]"


def _read_units(path: Path, nwbfile, units: Sequence[int] | None) -> list[np.ndarray]:
    table = nwbfile.units
    if table is None:
        raise ValueError(f"{path}: no units table (nwbfile.units is empty); spike-sorted units are needed")
    if "spike_times" not in table.colnames:
        raise ValueError(f"{path}: the units table has no spike_times column (columns: {list(table.colnames)})")
    ids = np.asarray(table.id[:])
    index = table["spike_times"]  # VectorIndex: end offsets into the flat spike_times data
    ends = np.asarray(index.data[:], dtype=np.int64)
    flat = np.asarray(index.target.data[:], dtype=np.float64)
    starts = np.concatenate([[0], ends[:-1]])
    if units is None:
        rows = np.arange(len(ids))
    else:
        wanted = list(units)
        if not wanted:
            raise ValueError("units: empty selection; pass None for all units")
        pos = {int(v): i for i, v in enumerate(ids)}
        missing = [u for u in wanted if int(u) not in pos]
        if missing:
            raise ValueError(f"{path}: unit ids {_short(missing)} not in the units table "
                             f"(ids: {_short(ids.tolist())})")
        rows = np.array([pos[int(u)] for u in wanted])
    if len(rows) == 0:
        raise ValueError(f"{path}: the units table has no units")
    out = []
    for r in rows:
        st = flat[starts[r]:ends[r]]
        out.append(np.sort(st[~np.isnan(st)]))
    return out


def _read_presentations(path: Path, nwbfile, stimulus: str, column: str, pynwb):
    """(onsets, image indices, linked images container or None)."""
    from hdmf.common import DynamicTable

    table = None
    intervals = dict(nwbfile.intervals or {})
    if stimulus in intervals:
        table = intervals[stimulus]
    elif stimulus == "trials" and nwbfile.trials is not None:
        table = nwbfile.trials
    elif stimulus == "epochs" and nwbfile.epochs is not None:
        table = nwbfile.epochs
    elif stimulus in (nwbfile.stimulus or {}):
        obj = nwbfile.stimulus[stimulus]
        if isinstance(obj, pynwb.image.IndexSeries):
            onsets = np.asarray(obj.get_timestamps(), dtype=np.float64)
            idx = np.asarray(obj.data[:])
            linked = obj.indexed_images if obj.indexed_images is not None else obj.indexed_timeseries
            return onsets, _as_indices(path, idx, f"IndexSeries {stimulus!r}"), linked
        if isinstance(obj, DynamicTable):
            table = obj
        else:
            raise ValueError(f"{path}: nwbfile.stimulus[{stimulus!r}] is a {type(obj).__name__}, "
                             "not a presentation table or an IndexSeries")
    if table is None:
        have = [f"intervals/{k}" for k in intervals]
        if nwbfile.trials is not None and "trials" not in intervals:
            have.append("trials")
        have += [f"stimulus/{k} ({type(v).__name__})" for k, v in (nwbfile.stimulus or {}).items()]
        raise ValueError(f"{path}: no presentation table {stimulus!r} "
                         f"(tables and stimuli here: {', '.join(have) or 'none'})")
    cols = list(table.colnames)
    for c in ("start_time", column):
        if c not in cols:
            raise ValueError(f"{path}: presentation table {stimulus!r} has no column {c!r} "
                             f"(columns: {', '.join(cols)})")
    onsets = np.asarray(table["start_time"].data[:], dtype=np.float64)
    idx = np.asarray(table[column].data[:])
    return onsets, _as_indices(path, idx, f"column {column!r} of {stimulus!r}"), None


def _as_indices(path: Path, idx: np.ndarray, what: str) -> np.ndarray:
    if idx.ndim != 1:
        raise ValueError(f"{path}: {what} must be one image index per presentation, got shape {idx.shape}")
    if idx.dtype.kind in "iu":
        return idx.astype(np.int64)
    if idx.dtype.kind == "f" and np.all(np.isfinite(idx)) and np.all(idx == np.round(idx)):
        return idx.astype(np.int64)
    raise ValueError(f"{path}: {what} must hold integer image indices, got dtype {idx.dtype}"
                     + (" with non-integer or NaN values" if idx.dtype.kind == "f" else ""))


def _natural_key(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def _containers(nwbfile):
    """(location, name, object) of every container that may hold image templates, in search order."""
    for loc, group in (("stimulus_template", nwbfile.stimulus_template), ("stimulus", nwbfile.stimulus),
                       ("acquisition", nwbfile.acquisition)):
        for k, v in (group or {}).items():
            yield loc, k, v
    for mod_name, mod in (nwbfile.processing or {}).items():
        for k, v in mod.data_interfaces.items():
            yield f"processing/{mod_name}", k, v


_MAX_DATASET_BYTES = 1 << 34  # 16 GB: ~450,000 uint8 images of 112x112x3


def _read_data(path: Path, label: str, data) -> np.ndarray:
    """An HDF5 dataset (or array) read whole, after checking its declared shape: at most
    MAX_DECODE_PIXELS pixels per frame and _MAX_DATASET_BYTES in all (a compressed dataset can
    declare far more than the file holds)."""
    shape = tuple(int(s) for s in getattr(data, "shape", ()))
    pixels = int(np.prod(shape[-3:-1] if len(shape) >= 3 and shape[-1] in (1, 3, 4) else shape[-2:]))
    itemsize = getattr(getattr(data, "dtype", None), "itemsize", 8)
    if len(shape) >= 2 and (pixels > MAX_DECODE_PIXELS or np.prod(shape) * itemsize > _MAX_DATASET_BYTES):
        raise ValueError(f"{path}: {label} declares data of shape {shape}: more than "
                         f"{MAX_DECODE_PIXELS:,} pixels per image or {_MAX_DATASET_BYTES:,} bytes in all")
    return np.asarray(data[()])


def _read_images(path: Path, nwbfile, name: str, linked, resize: bool, pynwb) -> np.ndarray:
    from pynwb.base import Images
    from pynwb.image import ImageSeries

    found = next((v for _, k, v in _containers(nwbfile) if k == name), None)
    if found is None and linked is not None:
        found = linked
    if found is None:
        have = [f"{loc}/{k} ({type(v).__name__})" for loc, k, v in _containers(nwbfile)]
        raise ValueError(f"{path}: no images container {name!r} (containers here: {', '.join(have) or 'none'})")
    label = f"images container {found.name!r}"
    if isinstance(found, Images):
        order = found.order_of_images
        if order is not None and len(order.data) > 0:
            members = [order.data[i] for i in range(len(order.data))]
        else:
            members = [found.images[k] for k in sorted(found.images, key=_natural_key)]
        if not members:
            raise ValueError(f"{path}: {label} holds no images")
        arrays = [_read_data(path, f"{label} image {m.name!r}", m.data) for m in members]
        names = [m.name for m in members]
    elif isinstance(found, ImageSeries):
        if found.external_file is not None or found.data is None or len(found.data) == 0:
            raise ValueError(f"{path}: {label} keeps its frames in external files "
                             f"({found.external_file}); only images stored in the file are supported")
        data = _read_data(path, label, found.data)
        if data.ndim < 3:
            raise ValueError(f"{path}: {label} frames must be (N, H, W, 3), got data of shape {data.shape}")
        arrays, names = list(data), [f"frame {i}" for i in range(len(data))]
    else:
        raise ValueError(f"{path}: {label} is a {type(found).__name__}, not an Images container or an ImageSeries")
    return np.stack([_check_image(path, label, n, a, resize) for n, a in zip(names, arrays)])


def _check_image(path: Path, label: str, name: str, arr: np.ndarray, resize: bool) -> np.ndarray:
    want = (IMAGE_SIZE, IMAGE_SIZE, 3)
    if arr.shape == want and arr.dtype == np.uint8:
        return arr
    if arr.dtype != np.uint8:
        raise ValueError(f"{path}: {label}: image {name!r} has dtype {arr.dtype}; expected uint8 RGB pixels")
    if not resize:
        raise ValueError(f"{path}: {label}: image {name!r} has shape {arr.shape}, expected {want} "
                         f"(112x112 RGB); pass resize=True to convert with Pillow")
    from PIL import Image

    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise ValueError(f"{path}: {label}: image {name!r} has shape {arr.shape}; "
                         "not a grayscale, RGB or RGBA image")
    im = Image.fromarray(np.ascontiguousarray(arr)).convert("RGB")
    if im.size != (IMAGE_SIZE, IMAGE_SIZE):
        im = im.resize((IMAGE_SIZE, IMAGE_SIZE), getattr(Image, "Resampling", Image).BICUBIC)  # Pillow < 9.1 too
    return np.asarray(im, dtype=np.uint8)
