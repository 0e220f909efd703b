"""The house rules that keep the code easy to change, checked on the source itself.

- No import cycle among ``smartlogger`` modules, counting imports inside functions (a cycle
  hidden by a function-level import is still a cycle: neither module can be understood,
  tested or moved without the other).
- A function-level import only where lazy loading is the point (CLI start-up, optional
  back ends, heavy libraries off a hot path), each with a comment saying so.
- The parts import only what docs/ARCHITECTURE.md allows.

The import graph is read with ``ast`` (nothing is imported), so a check can never pass
because an import happened to be satisfied already.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "smartlogger"


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the module imported (a smartlogger module, or another package's module)
    line: int
    in_function: bool
    comment: str  # comment on the import's line or the lines just above it


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _comments(lines: list[str], first: ast.stmt, last: ast.stmt) -> str:
    """Comments on the lines of ``first``..``last`` and in the comment lines just above ``first``."""
    found = [lines[i].split("#", 1)[1] for i in range(first.lineno - 1, last.end_lineno or last.lineno)
             if "#" in lines[i]]
    i = first.lineno - 2
    while i >= 0 and lines[i].strip().startswith("#"):
        found.append(lines[i].strip()[1:])
        i -= 1
    return " ".join(f.strip() for f in found)


def _explanations(tree: ast.AST, lines: list[str]) -> dict[int, str]:
    """For every import statement: the comment of the run of adjacent imports it is in (one
    comment above a block of imports explains the block)."""
    out: dict[int, str] = {}
    for node in ast.walk(tree):
        for name in ("body", "orelse", "finalbody"):
            body = getattr(node, name, None)
            if not isinstance(body, list):
                continue
            run: list[ast.stmt] = []
            for stmt in [*body, None]:
                if isinstance(stmt, ast.Import | ast.ImportFrom):
                    run.append(stmt)
                    continue
                if run:
                    text = _comments(lines, run[0], run[-1])
                    out.update((id(r), text) for r in run)
                    run = []
    return out


def _imports(module: str, source: str, *, is_package: bool = False) -> list[Import]:
    lines = source.splitlines()
    tree = ast.parse(source)
    package = module if is_package else module.rpartition(".")[0]
    explained = _explanations(tree, lines)
    in_function: set[int] = set()
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            in_function.update(id(n) for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom))
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only.update(id(n) for n in ast.walk(node))
    out: list[Import] = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            # ``from pkg import submodule`` imports the submodule; other names come from pkg.
            for alias in node.names:
                sub = f"{origin}.{alias.name}"
                targets.append(sub if sub in MODULES else origin)
        else:
            continue
        for target in dict.fromkeys(targets):
            if target != module:
                out.append(Import(module, target, node.lineno, id(node) in in_function,
                                  explained.get(id(node), "")))
    return out


def _internal(imports: list[Import]) -> list[Import]:
    return [imp for imp in imports if imp.target in MODULES]


ALL_IMPORTS = [imp for module, path in MODULES.items()
               for imp in _imports(module, path.read_text(encoding="utf-8"), is_package=path.name == "__init__.py")]
IMPORTS = _internal(ALL_IMPORTS)  # between smartlogger modules


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        out.append(sorted(component))
    return out


def _edges(imports: list[Import]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for imp in imports:
        edges[imp.module].add(imp.target)
    return edges


def test_the_cycle_finder_finds_cycles() -> None:
    """The check itself can fail: a two-module cycle and a longer one are both found."""
    edges = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c", "f"}, "f": set()}
    assert sorted(_cycles(edges)) == [["a", "b"], ["c", "d", "e"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_reader_sees_every_kind_of_import() -> None:
    source = """
from smartlogger.logfile import format, read_logfile
from .. import model
import smartlogger.errors
if TYPE_CHECKING:
    from smartlogger.api import app

def f():
    # lazy: only this command needs it
    from ..analysis import analyze
    import smartlogger.export.adapters as adapters  # lazy too
"""
    got = {(i.target, i.in_function, bool(i.comment)) for i in _internal(_imports("smartlogger.field.x", source))}
    assert got == {("smartlogger.logfile.format", False, False), ("smartlogger.logfile", False, False),
                   ("smartlogger.model", False, False), ("smartlogger.errors", False, False),
                   ("smartlogger.analysis.analyze", True, True), ("smartlogger.export.adapters", True, True)}


def test_no_import_cycle_among_smartlogger_modules() -> None:
    cycles = _cycles(_edges(IMPORTS))
    details = []
    for component in cycles:
        members = set(component)
        details.append(" <-> ".join(component) + ": " + "; ".join(
            f"{imp.module}:{imp.line} imports {imp.target}{' (in a function)' if imp.in_function else ''}"
            for imp in IMPORTS if imp.module in members and imp.target in members))
    assert not cycles, "import cycles:\n" + "\n".join(details)


#: Words that say why an import is inside a function (lazy loading is the point).
_LAZY_WORDS = ("lazy", "lazily", "optional", "only when", "only if", "start-up", "startup",
               "heavy", "on demand", "off the", "at call time", "not at import")


def test_function_level_imports_say_why() -> None:
    """Every function-level import (of anything) explains in a comment why it is lazy."""
    silent = [f"{imp.module}:{imp.line} imports {imp.target}" for imp in ALL_IMPORTS
              if imp.in_function and not any(w in imp.comment.lower() for w in _LAZY_WORDS)
              and not imp.module.startswith("smartlogger.api.migrations.")]
    assert not silent, ("function-level imports without a comment saying why they are lazy "
                        "(move them to the top, or say why):\n" + "\n".join(silent))


#: Stdlib-level modules every part may use: value types, the error tree, the quantity parsers,
#: the time-series CSV reader, the test metadata file, the primitive wire encodings, and the
#: dependency adapters.
SHARED = {"model", "errors", "quantities", "csvseries", "testinfo", "wire", "compat"}

#: docs/ARCHITECTURE.md: which parts a part may import (beyond ``SHARED`` and itself).
ALLOWED = {
    "model": set(),
    "errors": set(),
    "quantities": set(),
    "csvseries": set(),
    "testinfo": set(),
    "compat": set(),
    "wire": set(),
    "protocol": set(),
    "logfile": set(),
    "device": {"protocol", "logfile"},
    "analysis": {"logfile"},
    "export": {"analysis", "logfile"},
    "field": {"protocol", "logfile", "analysis", "export"},
    "api": {"logfile", "analysis", "export"},
    # Test support may use every part of the product; no part of the product uses it.
    "testing": {"device", "logfile", "analysis", "export", "protocol", "field", "api"},
}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_parts_import_only_what_the_architecture_allows(part: str) -> None:
    wrong = [f"{imp.module}:{imp.line} imports {imp.target}" for imp in IMPORTS
             if _part(imp.module) == part and _part(imp.target) not in (
                 ALLOWED[part] | {part, *SHARED, ""})]
    assert not wrong, f"{part} imports parts docs/ARCHITECTURE.md does not allow:\n" + "\n".join(wrong)
