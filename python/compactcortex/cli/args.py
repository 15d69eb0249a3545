"""Argument types shared by the commands: bounded numbers (argparse then prints its usage line
and one error line, and exits 2)."""
from __future__ import annotations

import argparse
import sys
import warnings
from typing import Callable

from ..engine.inputs import MAX_THREADS as THREADS

__all__ = ["THREADS", "int_arg", "float_arg", "device_arg", "deprecated_alias"]


def int_arg(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: an integer in [lo, hi]."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text[:40]!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be between {lo} and {hi}, got {v}")
        return v
    parse.__name__ = "integer"
    return parse


def float_arg(lo: float, hi: float, above: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in [lo, hi] (or (lo, hi] with ``above``)."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text[:40]!r}") from None
        if not (lo < v <= hi if above else lo <= v <= hi):  # also False for NaN
            raise argparse.ArgumentTypeError(f"must be {'above' if above else 'at least'} {lo} and at most {hi}, got {text[:40]}")
        return v
    parse.__name__ = "number"
    return parse


def device_arg(text: str) -> str:
    """An argparse type: 'cpu', 'cuda', 'cuda:N' or 'auto' (checked without importing torch)."""
    from ..devices import check_device

    try:
        return check_device(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


device_arg.__name__ = "device"


def deprecated_alias(run: Callable[[argparse.Namespace], int], old: str, new: str) -> Callable[[argparse.Namespace], int]:
    """``run`` behind a warning that ``compactcortex OLD`` is now ``compactcortex NEW``."""
    def alias(args: argparse.Namespace) -> int:
        warnings.warn(f"'compactcortex {old}' is deprecated and will be removed in the next minor version: "
                      f"use 'compactcortex {new}'", FutureWarning, stacklevel=2)
        sys.stderr.flush()
        return run(args)
    return alias
