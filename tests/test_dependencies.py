"""Dependencies stay pinned and adapted.

- Private attributes of bleak, bumble, nfcpy and openpyxl (leading-underscore names, their
  private modules, ``getattr(obj, "_name")``) are touched only inside ``smartlogger/compat/``,
  one adapter module per dependency, each checking the installed version at import.
- Every dependency in pyproject.toml is pinned exactly in constraints.txt, within its bounds;
  the installed environment is the pinned one; an adapter's ``require`` range and the bound in
  pyproject.toml are the same range.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
import re
import shlex
import subprocess
import sys
import tomllib
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from smartlogger.compat import UnsupportedDependency, require

ROOT = Path(__file__).resolve().parents[1]
COMPAT = ROOT / "smartlogger" / "compat"
_spec = importlib.util.spec_from_file_location("refresh_constraints", ROOT / "scripts" / "refresh_constraints.py")
assert _spec is not None and _spec.loader is not None
refresh = importlib.util.module_from_spec(_spec)  # scripts/ stays off sys.path
sys.modules[_spec.name] = refresh
_spec.loader.exec_module(refresh)

#: import name -> distribution, for every dependency whose internals we adapt.
HOOKED = {"bleak": "bleak", "bumble": "bumble", "nfc": "nfcpy", "openpyxl": "openpyxl"}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _sources() -> list[Path]:
    return [p for top in ("smartlogger", "tests", "benchmarks", "scripts") for p in sorted((ROOT / top).rglob("*.py"))
            if COMPAT not in p.parents]


_OWN = re.compile(r"\bdef (_[A-Za-z0-9]\w*)|\bclass (_[A-Za-z0-9]\w*)|\b(?:self|cls)\.(_[A-Za-z0-9]\w*)\s*(?::[^=\n]+)?="
                  r"|^[ \t]+(_[A-Za-z0-9]\w*)\s*(?::[^=\n]+)?=", re.M)
_HOOKED_IMPORT = re.compile(r"^\s*(?:from|import)\s+(?:bleak|bumble|nfc|openpyxl)\b|\bload_nfcpy\b", re.M)
#: Functions of the adapters that hand out a dependency's package (nfcpy is imported only
#: through ``compat.nfcpy.load_nfcpy``, one thread at a time): a module calling one uses it.
_LOADERS = {"load_nfcpy": "nfc"}


@cache
def _own_private_names() -> frozenset[str]:
    """Private names smartlogger defines itself outside compat/ (functions, classes, class
    attributes, ``self._x = ...``): accessing them on an object of ours is no dependency's
    business."""
    names: set[str] = set()
    for path in _sources():
        if path.is_relative_to(ROOT / "smartlogger"):
            for groups in _OWN.findall(path.read_text(encoding="utf-8")):
                names.update(g for g in groups if g)
    return frozenset(names)


@cache
def _dependency_private_names(root: str) -> frozenset[str]:
    """Private names a hooked dependency defines anywhere in its source (functions, classes,
    attributes, ``self._x = ...``), read from the installed package."""
    spec = importlib.util.find_spec(root)
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    names: set[str] = set()
    for folder in spec.submodule_search_locations:
        for path in Path(folder).rglob("*.py"):
            for groups in _OWN.findall(path.read_text(encoding="utf-8", errors="replace")):
                names.update(g for g in groups if g)
    return frozenset(names)


@cache
def _private_names_of(cls: type) -> frozenset[str]:
    """Private attributes a dependency class and its bases define (class level, and
    ``self._x = ...`` in their source)."""
    names: set[str] = set()
    for base in cls.__mro__:
        if base.__module__.split(".")[0] not in HOOKED:
            continue
        names.update(n for n in vars(base) if _private(n))
        try:
            tree = ast.parse(inspect.getsource(base))
        except (OSError, TypeError, SyntaxError, IndentationError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name) \
                    and node.value.id == "self":
                names.add(node.attr)
    return frozenset(names)


def _hooked_root(module: str) -> str | None:
    root = module.split(".")[0]
    return root if root in HOOKED else None


def violations(path: Path, source: str, *, runtime_module: str | None = None) -> list[str]:
    """Every place ``source`` reaches into a hooked dependency's private interface."""
    rel = path.relative_to(ROOT).as_posix() if path.is_absolute() else path.as_posix()
    tree = ast.parse(source)
    found: list[str] = []
    imported: dict[str, str] = {}  # local name -> dependency module it names
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if _hooked_root(a.name):
                    imported[(a.asname or a.name).split(".")[0]] = a.name
                    if any(_private(part) for part in a.name.split(".")):
                        found.append(f"{rel}:{node.lineno}: imports private module {a.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level and _hooked_root(node.module):
            for a in node.names:
                imported[a.asname or a.name] = f"{node.module}.{a.name}"
                if any(_private(part) for part in node.module.split(".")):
                    found.append(f"{rel}:{node.lineno}: imports from private module {node.module}")
                elif _private(a.name):
                    found.append(f"{rel}:{node.lineno}: imports private name {a.name} from {node.module}")
    roots = {_hooked_root(m) for m in imported.values()}
    roots |= {_LOADERS[n.id] for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id in _LOADERS}
    roots |= {_LOADERS[n.attr] for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr in _LOADERS}
    if not roots - {None}:
        return found
    own = _own_private_names()
    theirs_by_name = frozenset().union(*(_dependency_private_names(r) for r in roots if r is not None))
    # obj._name (not self/cls) and getattr/setattr/hasattr(obj, "_name"): a dependency's private
    # attribute unless it is a name smartlogger defines for its own objects and the dependencies
    # this module uses do not (one of ours may share a name with theirs: ws._charts is openpyxl's
    # even while smartlogger has a function _charts).
    for node in ast.walk(tree):
        name = None
        if isinstance(node, ast.Attribute) and _private(node.attr) and not (
                isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
            name = node.attr
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in (
                "getattr", "setattr", "hasattr", "delattr") and len(node.args) >= 2 and isinstance(
                node.args[1], ast.Constant) and isinstance(node.args[1].value, str) and _private(node.args[1].value):
            name = node.args[1].value
        if name is not None and (name not in own or name in theirs_by_name):
            found.append(f"{rel}:{node.lineno}: touches private attribute {name}")
    # self._name inside a class that subclasses a dependency class, where the dependency has it.
    if runtime_module is not None:
        module = importlib.import_module(runtime_module)
        for cls_node in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            cls = getattr(module, cls_node.name, None)
            if not isinstance(cls, type):
                continue
            theirs = _private_names_of(cls) if any(
                (_hooked_root(b.__module__) in roots) for b in cls.__mro__[1:]) else frozenset()
            for node in ast.walk(cls_node):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                        node.value.id in ("self", "cls") and node.attr in theirs:
                    found.append(f"{rel}:{node.lineno}: touches {cls.__mro__[1].__module__}'s private "
                                 f"attribute {node.attr}")
    return found


def _module_name(path: Path) -> str | None:
    if not path.is_relative_to(ROOT / "smartlogger"):
        return None
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_private_interfaces_of_dependencies_only_in_compat() -> None:
    found: list[str] = []
    for path in _sources():
        source = path.read_text(encoding="utf-8")
        if not _HOOKED_IMPORT.search(source):
            continue  # imports none of the hooked dependencies
        found += violations(path, source, runtime_module=_module_name(path))
    assert not found, ("private interfaces of dependencies outside smartlogger/compat/ (put them in "
                       "the dependency's adapter module):\n" + "\n".join(found))


def test_the_private_interface_check_can_fail() -> None:
    """Each kind of reach into a dependency is caught; our own private names are not."""
    source = '''
from openpyxl.worksheet._write_only import WriteOnlyWorksheet
from bleak.backends.client import BaseBleakClient
from bumble import _private_thing

def f(ws, clf, radio):
    ws._charts.append(1)
    wb = ws.parent
    wb._add_sheet(ws)
    getattr(clf.device, "_listen_tta", None)
    return radio._connect_lock  # ours (field.ble_virtual.VirtualRadio._connect_lock)
'''
    got = violations(Path("example.py"), source)
    assert sorted(g.split(": ", 1)[1] for g in got) == sorted([
        "imports from private module openpyxl.worksheet._write_only",
        "imports private name _private_thing from bumble",
        "touches private attribute _charts", "touches private attribute _add_sheet",
        "touches private attribute _listen_tta"])
    assert violations(Path("example.py"), "import bumble\nx = thing._secret\n") == [
        "example.py:2: touches private attribute _secret"]


def test_nfcpy_through_its_loader_is_still_nfcpy() -> None:
    """Every nfcpy import goes through ``compat.nfcpy.load_nfcpy()``: a module that gets nfcpy
    there (no ``import nfc`` in sight) is checked as one that imports it."""
    source = '''
from smartlogger.compat.nfcpy import load_nfcpy

def tap():
    nfc = load_nfcpy()
    clf = nfc.ContactlessFrontend("udp")
    return clf.device._listen_tta
'''
    assert _HOOKED_IMPORT.search(source)
    got = violations(Path("example.py"), source)
    assert [g.split(": ", 1)[1] for g in got] == ["touches private attribute _listen_tta"]
    # the modules that use nfcpy today are among those checked
    users = {p.relative_to(ROOT).as_posix() for p in _sources() if _HOOKED_IMPORT.search(p.read_text(encoding="utf-8"))}
    assert {"smartlogger/field/nfc.py", "smartlogger/device/nfc_tag.py"} <= users


def test_a_subclass_touching_its_dependency_base_privates_is_caught(tmp_path: Path) -> None:
    module = tmp_path / "sl_probe_subclass.py"
    module.write_text('''
from bleak.backends.client import BaseBleakClient

class Probe(BaseBleakClient):
    def timeout(self):
        return self._timeout, self._mine

    def set(self):
        self._mine = 1
''', encoding="utf-8")
    sys.path.insert(0, str(tmp_path))
    try:
        got = violations(module.relative_to(tmp_path), module.read_text(), runtime_module="sl_probe_subclass")
    finally:
        sys.path.remove(str(tmp_path))
    assert len(got) == 1 and "private attribute _timeout" in got[0]


# ---------------------------------------------------------------------------- pins and bounds


def _project() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _requirements() -> list[Requirement]:
    project = _project()
    reqs = list(project["dependencies"])  # type: ignore[call-overload]
    for extra in project["optional-dependencies"].values():  # type: ignore[attr-defined]
        reqs += extra
    return [Requirement(r) for r in reqs]


def test_every_dependency_is_pinned_exactly_within_its_bounds() -> None:
    pins = refresh.read_pins()
    for req in _requirements():
        name = refresh.canonical(req.name)
        assert name in pins, f"{req.name} is not pinned in constraints.txt (run scripts/refresh_constraints.py)"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {req.name}=={pins[name]}, outside pyproject's {req.specifier}")


def test_the_installed_environment_is_the_pinned_one() -> None:
    """constraints.txt is exactly what this environment needs of smartlogger[dev], transitively
    (what ``pip install -c constraints.txt -e '.[dev]'`` installs and the tests ran with)."""
    pins = refresh.read_pins()
    installed = refresh.closure()
    differ = [f"{n}: installed {v}, pinned {pins.get(n, '-')}" for n, v in installed.items() if pins.get(n) != v]
    extra = [f"{n}=={v} is pinned but not needed" for n, v in pins.items() if n not in installed]
    assert not differ + extra, ("the environment does not match constraints.txt (install with "
                                "pip install -c constraints.txt -e '.[dev]', or refresh it with "
                                "scripts/refresh_constraints.py):\n" + "\n".join(differ + extra))


def _require_ranges() -> dict[str, tuple[str, str]]:
    """``{dist: (minimum, below)}`` of every ``require`` call in the adapters."""
    out: dict[str, tuple[str, str]] = {}
    for path in sorted(COMPAT.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        consts = {t.id: n.value.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                  and isinstance(n.value, ast.Constant) for t in n.targets if isinstance(t, ast.Name)}
        for n in ast.walk(tree):
            if isinstance(n, ast.Assign) and isinstance(n.value, ast.Tuple):  # A, B = "x", "y"
                for t in n.targets:
                    if isinstance(t, ast.Tuple):
                        for name, value in zip(t.elts, n.value.elts, strict=False):
                            if isinstance(name, ast.Name) and isinstance(value, ast.Constant):
                                consts[name.id] = value.value
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "require":
                args = [a.value if isinstance(a, ast.Constant) else consts.get(getattr(a, "id", ""))
                        for a in n.args]
                out[args[0]] = (args[1], args[2])
    return out


def test_every_adapter_checks_the_range_pyproject_allows() -> None:
    ranges = _require_ranges()
    assert {"openpyxl", "bleak", "nfcpy"} <= set(ranges)
    by_name = {refresh.canonical(r.name): r for r in _requirements()}
    for dist, (low, below) in ranges.items():
        assert by_name[refresh.canonical(dist)].specifier == SpecifierSet(f">={low},<{below}"), (
            f"smartlogger/compat requires {dist} >={low},<{below}; pyproject.toml says "
            f"{by_name[refresh.canonical(dist)].specifier}")


def test_pre_1_0_and_hooked_dependencies_have_an_upper_bound() -> None:
    pins = refresh.read_pins()
    for req in _requirements():
        hooked = refresh.canonical(req.name) in {refresh.canonical(d) for d in HOOKED.values()}
        pre_1_0 = Version(pins[refresh.canonical(req.name)]).major == 0
        if hooked or pre_1_0:
            assert any(s.operator in ("<", "<=", "~=", "==") for s in req.specifier), (
                f"{req.name} ({'hooked' if hooked else 'pre-1.0'}) needs an upper bound in pyproject.toml")


def test_an_adapter_refuses_a_release_outside_its_range() -> None:
    installed = metadata.version("openpyxl")
    assert require("openpyxl", installed, "999") == installed
    with pytest.raises(UnsupportedDependency) as err:
        require("openpyxl", "999", "1000")
    assert err.value.dist == "openpyxl" and ">=999,<1000" in str(err.value)
    assert re.search(r"pip install -c constraints\.txt", str(err.value))


# ---------------------------------------------------------------------------- a fresh clone


def _readme_install() -> list[str]:
    """The README's install command (its "Two commands"), as arguments."""
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("pip install -c constraints.txt"):
            return shlex.split(line.split("&&")[0])
    raise AssertionError("README.md has no 'pip install -c constraints.txt ...' command")


def test_ci_installs_with_the_readme_command() -> None:
    """.ci/run (a fresh clone on a fresh machine) installs exactly as the README says."""
    ci = [shlex.split(line.strip()) for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
          if "pip install" in line and not line.strip().startswith("#")]
    readme = _readme_install()
    assert [[a for a in args[args.index("pip"):] if a != "-q"] for args in ci] == [readme]


@pytest.mark.slow
def test_a_fresh_clone_installs_from_the_constraints_with_the_readme_command(tmp_path: Path) -> None:
    """Clone the committed tree, make a new environment, run the README's install command in the
    clone as written, and use the installed command. The environment sees this machine's
    packages (--system-site-packages: the pinned ones, see the test above), so pip fetches only
    what is missing (the build back end) and checks every pin against pyproject.toml's bounds;
    CI's .ci/run does the whole download on a fresh machine."""
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", head], check=True)
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(env_dir)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env['PATH']}"
    install = subprocess.run(_readme_install(), cwd=clone, env=env, capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, f"{' '.join(_readme_install())} failed in a fresh clone:\n" \
                                    f"{install.stdout[-3000:]}\n{install.stderr[-3000:]}"
    used = subprocess.run([str(env_dir / "bin" / "python"), "-c", "import smartlogger; print(smartlogger.__file__)"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(used).is_relative_to(clone)  # the clone's code, installed editable
    cli = subprocess.run([str(env_dir / "bin" / "smartlogger"), "sim", "--help"], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert cli.returncode == 0 and "site" in cli.stdout, cli.stdout + cli.stderr
