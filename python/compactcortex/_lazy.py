"""Public names imported on first use (gsplat's habit): a package stays cheap to import, and
``import compactcortex.metrics`` or a command's parser loads neither torch nor the compiled engine."""
from __future__ import annotations

import importlib
import sys
import types
from typing import Any, Callable


class _NamesOverSubmodules(types.ModuleType):
    """A package whose public names win over its submodules of the same name: importing
    ``compactcortex.fit.distill`` (the module) binds it on the package, which would hide the
    function ``compactcortex.fit.distill`` from everyone who imports it afterwards."""

    _shadowed: frozenset = frozenset()

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._shadowed and isinstance(value, types.ModuleType):
            value = getattr(value, name)  # the import system binding the submodule: keep the function
        super().__setattr__(name, value)


def lazy_getattr(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``names`` maps each public name to the module
    that defines it (a submodule of ``package`` by its bare name, or an absolute module path),
    imported on first access and cached on the package. A name defined in a submodule of the
    same name (``fit.distill.distill``) stays the name, not the submodule, once that is imported."""
    shadowed = frozenset(n for n, where in names.items() if where == n)
    if shadowed:
        module = sys.modules[package]
        module.__class__ = _NamesOverSubmodules
        module._shadowed = shadowed

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        where = names[name]
        value = getattr(importlib.import_module(where if "." in where else f"{package}.{where}"), name)
        setattr(sys.modules[package], name, value)
        return value
    return __getattr__
