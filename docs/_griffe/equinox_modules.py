"""A Griffe extension for documenting Equinox modules.

The API pages are built by importing `implicitx` (`force_inspection: true` in
mkdocs.yml), because `equinox.Module` subclasses get their `__init__` from the dataclass
machinery at runtime and static analysis cannot see its signature. This extension
tidies two things that inspection produces:

- the generated `__init__` has no docstring of its own and would show the generic
  "Initialize self..." text of `object.__init__`;
- base classes are given by their defining, private module
  (`implicitx._conditions._base.AbstractCondition`); they are shown by their public
  path instead (`implicitx.AbstractCondition`).
"""

from typing import Any

import griffe


def _public_path(path: str) -> str:
    parts = path.split(".")
    return ".".join([p for p in parts[:-1] if not p.startswith("_")] + parts[-1:])


class EquinoxModules(griffe.Extension):
    def on_function_instance(self, *, func: griffe.Function, **kwargs: Any) -> None:
        doc = func.docstring
        if func.name == "__init__" and doc and doc.value.startswith("Initialize self"):
            func.docstring = None

    def on_class_instance(self, *, cls: griffe.Class, **kwargs: Any) -> None:
        cls.bases = [_public_path(b) if isinstance(b, str) else b for b in cls.bases]
