"""The companion app's static files: installable manifest, complete offline shell, CSP-friendly.

These read app_stub/ as shipped (no browser): the manifest's share target must be inside the
service worker's scope and use the form field the worker reads; every file of the app must be in
the worker's precache list (or the app is only half usable offline); no inline script or style
and no third-party origin anywhere (the page's Content-Security-Policy forbids both).
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[1] / "app_stub"
SW = (APP / "sw.js").read_text(encoding="utf-8")


def app_files() -> list[Path]:
    return sorted(p for p in APP.rglob("*") if p.is_file() and "vendor" not in p.parts)


def test_manifest_is_installable_and_its_share_target_reaches_the_worker() -> None:
    m = json.loads((APP / "manifest.webmanifest").read_text(encoding="utf-8"))
    assert m["display"] == "standalone" and m["start_url"].startswith(m["scope"]) and m["scope"] == "/app/"
    sizes = {}
    for icon in m["icons"]:
        path = APP / icon["src"]
        assert path.is_file(), icon
        if icon["type"] == "image/png":
            head = path.read_bytes()[:24]
            assert head[:8] == b"\x89PNG\r\n\x1a\n"
            width, height = struct.unpack(">II", head[16:24])
            assert icon["sizes"] == f"{width}x{height}"
            sizes[width] = icon
    assert {192, 512} <= set(sizes)  # what Chromium requires to offer installation
    share = m["share_target"]
    assert share["method"] == "POST" and share["enctype"] == "multipart/form-data"
    assert share["action"].startswith(m["scope"])
    field = share["params"]["files"][0]["name"]
    assert f'form.getAll("{field}")' in SW
    assert f'SCOPE + "{share["action"].removeprefix(m["scope"])}"' in SW
    assert ".slog" in share["params"]["files"][0]["accept"]


def test_every_app_file_is_precached_for_offline_use() -> None:
    listed = re.search(r"var SHELL = \[(.*?)\]", SW, re.S)
    assert listed is not None
    shell = set(re.findall(r'"([^"]*)"', listed.group(1)))
    files = {str(p.relative_to(APP)) for p in app_files()} - {"sw.js"}
    assert files - shell == set(), "add these to SHELL in sw.js"
    assert shell - files - {""} == set(), "SHELL names files that do not exist"


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inline_scripts = 0
        self.styles = 0
        self.style_attrs: list[str] = []
        self.handlers: list[str] = []
        self.csp = ""
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script":
            self._in_script = "src" not in a
        if tag == "style":
            self.styles += 1
        if "style" in a:
            self.style_attrs.append(tag)
        self.handlers += [k for k in a if k.startswith("on")]
        if tag == "meta" and (a.get("http-equiv") or "").lower() == "content-security-policy":
            self.csp = a.get("content") or ""

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False


def test_shell_has_a_strict_csp_and_no_inline_code() -> None:
    page = _Page()
    page.feed((APP / "index.html").read_text(encoding="utf-8"))
    assert page.inline_scripts == 0 and page.styles == 0 and page.style_attrs == [] and page.handlers == []
    directives = dict(d.strip().split(" ", 1) for d in page.csp.split(";") if d.strip())
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["default-src"] == "'self'" and directives["object-src"] == "'none'"


def test_no_third_party_origins_or_eval() -> None:
    allowed = {"http://www.w3.org/2000/svg"}  # the SVG namespace name, never fetched
    for path in app_files():
        if path.suffix not in (".js", ".html", ".css", ".webmanifest", ".svg"):
            continue
        text = path.read_text(encoding="utf-8")
        urls = set(re.findall(r"https?://[^\s\"'<>)]+", text)) - allowed
        assert urls == set(), f"{path.name}: {urls}"
        if path.suffix == ".js":
            assert not re.search(r"\beval\(|new Function\(|innerHTML", text), path.name


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_scripts_parse() -> None:
    for path in app_files():
        if path.suffix == ".js":
            subprocess.run(["node", "--check", str(path)], check=True, capture_output=True, timeout=30)
