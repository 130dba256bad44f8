"""Contract code a node has installed: found from its configuration, named by code hash.

Genesis and governance name a contract by ``(name, code hash)``; the code itself is installed
on each validator, the way Fabric installs chaincode on a peer: node.json ``contracts`` lists
``{"module": "package.module:Class"}`` (a module on the node's Python path) or
``{"entry_point": "name"}`` (an installed distribution's entry point in the group
``accord.contracts``). The node offers the runtime every class it found, and the runtime
runs, at each height, the code whose hash governance put in force there.

The code hash covers the contract's module and every module it imports, directly or through
one another, from its own top-level package (a contract's helpers are its code: changing one
changes what validators compute). The ``accord`` package is the node's own version and is not
covered, so a built-in contract's hash is still that of its one file.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import inspect
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from accord.base import encoding
from accord.base.errors import GenesisError, ValidationError

if TYPE_CHECKING:
    from accord.contracts.base import Contract

ENTRY_POINT_GROUP = "accord.contracts"
NODE_PACKAGE = "accord"

MULTI_MODULE_TAG = "accord-contract-code/1"


def load_class(spec: str) -> type[Contract]:
    """The contract class ``package.module:Class`` names (importing the module)."""
    from accord.contracts.base import Contract

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValidationError(
            f"{spec!r}: a contract is named module:Class, e.g. escrow.main:Escrow"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # ImportError, or the module's own error while importing
        raise ValidationError(f"cannot import contract module {module_name!r}: {e}") from None
    cls = vars(module).get(attr)
    if not (isinstance(cls, type) and issubclass(cls, Contract) and cls.name):
        raise ValidationError(f"{spec!r} is not a contract class (a named Contract subclass)")
    return cls


def load_entry_point(name: str) -> type[Contract]:
    """The contract class an installed distribution declares under ``accord.contracts``."""
    found = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        raise ValidationError(
            f"no installed package declares the entry point {name!r} in group "
            f"{ENTRY_POINT_GROUP!r} (pip install the contract's package on this node)"
        )
    return load_class(found[0].value)


def _imports(tree: ast.Module, package: str | None) -> list[str]:
    """Module names a module's code imports (relative imports resolved in ``package``)."""
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                if not package:
                    continue
                try:
                    base = importlib.util.resolve_name("." * node.level + base, package)
                except ImportError:
                    continue
            out.append(base)
            out += [f"{base}.{a.name}" for a in node.names]  # ``from pkg import helpers``
    return out


def own_modules(cls: type) -> list[tuple[str, Path]]:
    """The contract's module and the modules of its own top-level package it reaches through
    imports, sorted by name: what its code hash covers and the determinism check reads."""
    module = inspect.getmodule(cls)
    if module is None:
        raise GenesisError(f"contract {cls.__name__} has no module")
    try:
        path = inspect.getsourcefile(cls)
    except TypeError:
        path = None
    if path is None:
        raise GenesisError(f"contract {cls.__name__} has no source file to hash")
    top = module.__name__.split(".")[0]
    found: dict[str, Path] = {module.__name__: Path(path)}
    if top == NODE_PACKAGE or (module.__name__ == top and not hasattr(module, "__path__")):
        return list(found.items())  # the node's own, or a lone module: one file
    from accord.contracts.base import Contract
    from accord.contracts.determinism import reachable_statements

    # In the contract's own module only what its classes reach counts (a test module, say,
    # may import much else); a helper module is the contract's code as a whole.
    roots = [
        k.__qualname__.split(".")[0]
        for k in cls.__mro__
        if k is not Contract and issubclass(k, Contract) and k.__module__ == module.__name__
    ]
    todo = [module.__name__]
    while todo:
        name = todo.pop()
        mod = sys.modules.get(name)
        package = getattr(mod, "__package__", None) if mod is not None else None
        tree = ast.parse(found[name].read_bytes(), str(found[name]))
        if name == module.__name__:
            tree = ast.Module(body=reachable_statements(tree, roots), type_ignores=[])
        for imported in _imports(tree, package):
            if imported in found or not (imported == top or imported.startswith(top + ".")):
                continue
            try:
                spec = importlib.util.find_spec(imported)
            except (ImportError, ValueError):
                spec = None
            if spec is None or not spec.origin or not spec.origin.endswith(".py"):
                continue  # ``from pkg import name`` where name is not a module
            found[imported] = Path(spec.origin)
            todo.append(imported)
    return sorted(found.items())


def package_code_hash(cls: type) -> bytes:
    """SHA-256 of the contract's code (see the module notes). One module: the hash of its
    file, as before helpers were covered, so existing genesis files keep their hashes."""
    modules = own_modules(cls)
    if len(modules) == 1:
        return hashlib.sha256(modules[0][1].read_bytes()).digest()
    return encoding.hash_value(
        [MULTI_MODULE_TAG]
        + [[name, hashlib.sha256(p.read_bytes()).digest()] for name, p in modules]
    )
