"""The package's files, in one room: atomic writes, JSON results and the safetensors formats.

Torch-free, so that `engine` (Plans) and `models` (CompactModels, teachers) both build on it
without importing each other. Every file the package writes goes through :func:`atomic_path`.
"""
from __future__ import annotations

import glob
import json
import lzma
import os
import re
import socket
import stat
import time
import tempfile
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterator

__all__ = ["PLAN_FORMAT", "COMPACT_MODEL_FORMAT", "ENSEMBLE_FORMAT", "TRANSFER_TEACHER_FORMAT", "TRUNK_FORMAT",
           "atomic_path", "write_json", "safetensors_format", "read_safetensors_meta", "checked_name",
           "ZIP_ERRORS", "read_zip_member", "Refused", "open_regular", "read_bounded", "meta_int", "meta_ints", "meta_floats", "meta_choice", "meta_json"]

# The ``format`` metadata entry of each safetensors file the package writes.
PLAN_FORMAT = "compactcortex.Plan/1"
COMPACT_MODEL_FORMAT = "compactcortex.CompactModel/1"
ENSEMBLE_FORMAT = "compactcortex.Ensemble/1"
TRANSFER_TEACHER_FORMAT = "compactcortex.TransferTeacher/1"
TRUNK_FORMAT = "compactcortex.Trunk/1"

# mkstemp creates 0600 files; give results the permissions an ordinary open() would (0666 & ~umask).
_UMASK = os.umask(0)
os.umask(_UMASK)


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


def checked_name(name: object, what: str) -> str:
    """``str(name)`` if it can be one component of a file name, else ValueError.

    Every name that becomes part of a path (session names from the command line, NWB
    ``session_id``, digital population names) goes through here, so none can climb out of its
    folder (``../x``), hide (``.x``), pass for an option (``-x``) or hold separators.
    """
    text = str(name)
    if not _NAME.fullmatch(text):
        raise ValueError(f"{what} {text!r} cannot be used as a file name: use letters, digits and . _ + - "
                         f"(starting with a letter or digit, at most 128 characters)")
    return text


#: What reading a damaged zip raises besides BadZipFile: OSError/EOFError (truncated), zlib.error
#: (a bad deflate stream), lzma.LZMAError (a bad LZMA stream: not an OSError), NotImplementedError
#: (a compression method zipfile lacks), RuntimeError (an encrypted member).
ZIP_ERRORS = (zipfile.BadZipFile, OSError, EOFError, zlib.error, lzma.LZMAError, NotImplementedError, RuntimeError)


def read_zip_member(zf: zipfile.ZipFile, name: str, max_bytes: int, label: str) -> bytes:
    """The bytes of member ``name``, after checking its declared size against ``max_bytes`` (a
    zip bomb declares far more than the archive holds). Raises ValueError starting ``label``;
    KeyError for a missing member and ZIP_ERRORS for a damaged one, as zipfile does."""
    size = zf.getinfo(name).file_size
    if size > max_bytes:
        raise ValueError(f"{label} declares {size:,} bytes, more than the {max_bytes:,} accepted")
    return zf.read(name)


_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:24] or "host"
#: A temporary file is an orphan only when also this old (s): containers may share a host name
#: and a folder without sharing process ids, so a pid not seen here may still be writing.
ORPHAN_AGE_S = 3600.0


def _remove_orphans(target: Path) -> None:
    """Delete temporary files of earlier writes to ``target`` whose writer died (kill -9, power
    loss): those named for this host and a process id that no longer runs, untouched for
    ORPHAN_AGE_S. Files of other hosts (a shared file system) and of live processes are left."""
    now = time.time()
    for tmp in target.parent.glob(f".{glob.escape(target.name)}.{_HOST}.*.tmp"):
        pid = tmp.name[len(target.name) + len(_HOST) + 3:].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            if now - tmp.stat().st_mtime < ORPHAN_AGE_S:
                continue
        except OSError:  # gone meanwhile
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except OSError:  # alive but another user's, or not ours to signal
            pass


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces ``path``.

    A crash or exception leaves any existing file at ``path`` untouched. The temporary file is
    named ``.<name>.<host>.<pid>.<random>.tmp``; one left by a killed writer is removed by a
    later write to the same target on that host, once it is ORPHAN_AGE_S old.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{_HOST}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # writers may have recreated the file
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1))
    return Path(path)


def safetensors_format(path: str | os.PathLike) -> str | None:
    """The ``format`` metadata entry of a safetensors file (None if it has none).

    Raises ValueError for a missing or unreadable file.
    """
    return _metadata(Path(path)).get("format")


def read_safetensors_meta(path: str | os.PathLike, expected_format: str | tuple[str, ...]) -> dict:
    """The metadata of a safetensors file, checking its ``format`` entry.

    Raises ValueError for a missing, truncated or foreign file.
    """
    path = Path(path)
    meta = _metadata(path)
    formats = (expected_format,) if isinstance(expected_format, str) else expected_format
    if meta.get("format") not in formats:
        raise ValueError(f"{path}: expected a {' or '.join(formats)} file, found format {meta.get('format')!r}")
    return meta


# ---- checked metadata entries: every number read from a file, checked for type and range -------

_REQUIRED = object()


def _entry(meta: dict, key: str, path, default):
    if key not in meta:
        if default is _REQUIRED:
            raise ValueError(f"{path}: metadata entry {key!r} is missing")
        return default
    return meta[key]


def meta_json(meta: dict, key: str, path, default: Any = _REQUIRED) -> Any:
    """Metadata entry ``key`` decoded from JSON (``default`` when absent, if given)."""
    text = _entry(meta, key, path, _REQUIRED if default is _REQUIRED else None)
    if text is None:
        return default
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{path}: metadata entry {key!r} is not JSON ({str(e)[:100]})") from None


def _is_int(v: object, lo: int, hi: int) -> bool:
    return type(v) is int and lo <= v <= hi


def meta_int(meta: dict, key: str, path, lo: int, hi: int, default: int | None = None) -> int:
    """Metadata entry ``key``: a decimal integer in [lo, hi] (not 1.7, True or 1e3)."""
    text = _entry(meta, key, path, _REQUIRED if default is None else str(default))
    if not (re.fullmatch(r"-?[0-9]{1,19}", text) and lo <= int(text) <= hi):
        raise ValueError(f"{path}: metadata {key}={text[:40]!r}; expected an integer in [{lo}, {hi}]")
    return int(text)


def meta_ints(meta: dict, key: str, path, length: int, lo: int, hi: int) -> list[int]:
    """Metadata entry ``key``: a JSON list of ``length`` integers in [lo, hi]."""
    v = meta_json(meta, key, path)
    if not (isinstance(v, list) and len(v) == length and all(_is_int(x, lo, hi) for x in v)):
        raise ValueError(f"{path}: metadata {key}={str(v)[:60]}; expected {length} integers in [{lo}, {hi}]")
    return v


def meta_floats(meta: dict, key: str, path, length: int, lo: float, hi: float) -> list[float]:
    """Metadata entry ``key``: a JSON list of ``length`` finite numbers in [lo, hi]."""
    v = meta_json(meta, key, path)
    ok = isinstance(v, list) and len(v) == length and all(
        type(x) in (int, float) and lo <= x <= hi for x in v)   # NaN fails the comparison
    if not ok:
        raise ValueError(f"{path}: metadata {key}={str(v)[:60]}; expected {length} numbers in [{lo}, {hi}]")
    return [float(x) for x in v]


def meta_choice(meta: dict, key: str, path, choices: tuple[str, ...], default: str | None = None) -> str:
    """Metadata entry ``key``: one of ``choices``."""
    v = _entry(meta, key, path, _REQUIRED if default is None else default)
    if v not in choices:
        raise ValueError(f"{path}: metadata {key}={v[:40]!r}; expected one of {', '.join(choices)}")
    return v


def _metadata(path: Path) -> dict:
    from safetensors import safe_open

    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="numpy") as f:
            return f.metadata() or {}
    except Exception as e:
        raise ValueError(f"{path}: not a readable safetensors file ({str(e)[:200]})") from None


# ---- opening files: regular files only ---------------------------------------------------------

class Refused(ValueError):
    """A refusal already labelled with the file it concerns (readers tell it apart from the
    ValueErrors of the libraries they call, e.g. Pillow's, which they label themselves)."""


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _check_regular(mode: int, label: str) -> None:
    if not stat.S_ISREG(mode):
        kind = next((k for is_kind, k in _KINDS if is_kind(mode)), "a special file")
        raise Refused(f"{label}: not a regular file ({kind}); only regular files are read")


def open_regular(path: str | os.PathLike, label: str, follow_symlinks: bool = True) -> BinaryIO:
    """``path`` opened for reading in binary mode, if it is a regular file.

    A FIFO, device, socket or folder is refused from ``stat`` before opening (reading a FIFO
    blocks forever, a device may never end, opening some devices has effects), and again from
    the open descriptor, in case the path was swapped in between: the open itself uses
    O_NONBLOCK, so a FIFO swapped in cannot block it. ``follow_symlinks=False`` refuses a
    symlink (O_NOFOLLOW). Raises ValueError starting ``label``.
    """
    try:
        _check_regular(os.stat(path, follow_symlinks=follow_symlinks).st_mode, label)
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
        fd = os.open(path, flags | (0 if follow_symlinks else getattr(os, "O_NOFOLLOW", 0)))
    except OSError as e:
        raise Refused(f"{label}: cannot open ({e.strerror or e})") from None
    f = os.fdopen(fd, "rb")
    try:
        _check_regular(os.fstat(fd).st_mode, label)
    except BaseException:
        f.close()
        raise
    return f


def read_bounded(f: BinaryIO, max_bytes: int, label: str) -> bytes:
    """All of ``f``, refused (Refused) if it is, or grows to be, over ``max_bytes``."""
    size = os.fstat(f.fileno()).st_size
    data = f.read(max_bytes + 1) if size <= max_bytes else b""
    if size > max_bytes or len(data) > max_bytes:  # the file may grow while read
        raise Refused(f"{label}: {max(size, len(data)):,} bytes, more than the {max_bytes:,} accepted")
    return data
