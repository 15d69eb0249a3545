"""Public names imported on first use (gsplat's habit): a package stays cheap to import, and
``import compactcortex.metrics`` or a command's parser loads neither torch nor the compiled engine."""
from __future__ import annotations

import importlib
import sys
from typing import Any, Callable


def lazy_getattr(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``names`` maps each public name to the module
    that defines it (a submodule of ``package`` by its bare name, or an absolute module path),
    imported on first access and cached on the package."""
    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        where = names[name]
        value = getattr(importlib.import_module(where if "." in where else f"{package}.{where}"), name)
        setattr(sys.modules[package], name, value)
        return value
    return __getattr__
