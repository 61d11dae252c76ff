"""The documentation: the README a newcomer reads (at most 200 lines, the commands it
names exist), the config reference generated from the schema, the mkdocs site built with
--strict, and every built page opened in headless Chromium with no broken internal link."""

from __future__ import annotations

import html.parser
import importlib.util
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from browser import chromium, require_chromium

from tlbench.report.pages import config_reference
from tlbench.study.config import load_schema

ROOT = Path(__file__).resolve().parents[1]


def test_readme_is_short_and_names_the_commands_that_exist():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    makefile = (ROOT / "Makefile").read_text()
    for target in re.findall(r"`make (\w[\w-]*)`", readme):
        assert re.search(rf"^{target}:", makefile, re.M), f"README names make {target}"
    for command in ("make study", "make test", "tlbench compare", "tlbench init", "make docs"):
        assert command in readme, command
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).is_file(), f"README links {link}"


def test_the_config_reference_is_the_one_generated_from_the_schema():
    """docs/config.md is generated (python -m tlbench.report.pages.config_reference)."""
    committed = (ROOT / "docs/config.md").read_text()
    assert committed == config_reference.render(load_schema()), (
        "docs/config.md is stale: make config-reference"
    )
    schema = load_schema()
    for key in schema["properties"]:
        assert f"| `{key}` |" in committed, key
    for key in schema["$defs"]["training"]["properties"]:
        assert f"| `{key}` |" in committed, key


def test_make_test_runs_the_docs_build():
    """`.ci/run` runs `make test`; `make test` runs pytest, which runs this file."""
    assert "make test" in (ROOT / ".ci/run").read_text()
    assert "mkdocs build --strict" in (ROOT / "Makefile").read_text()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    if importlib.util.find_spec("mkdocs") is None:
        if os.environ.get("CI"):
            pytest.fail("mkdocs is missing in CI (requirements.txt pins it)")
        pytest.skip("mkdocs is not installed (pip install -r requirements.txt)")
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return out


def test_docs_build_strict(site):
    """Every page of docs/ is in the site (mkdocs --strict fails on a page outside the nav,
    a link to a missing page or anchor)."""
    pages = sorted(p.relative_to(ROOT / "docs").with_suffix(".html") for p in _doc_pages())
    for page in pages:
        assert (site / page).is_file(), page
    assert "Study config reference" in (site / "config.html").read_text()


def _doc_pages() -> list[Path]:
    return sorted((ROOT / "docs").rglob("*.md"))


class _Links(html.parser.HTMLParser):
    """The ``href`` of every ``<a>`` and every ``id`` of a rendered page."""

    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.hrefs.append(attrs["href"])


def _render(page: Path) -> str:
    """The DOM of ``page`` after headless Chromium has run it."""
    return chromium(page, "--dump-dom", budget_ms=3000)


@pytest.mark.slow
def test_every_docs_page_opens_in_chromium_without_a_broken_internal_link(site):
    require_chromium("the site was built but not opened in a browser")
    pages = sorted(site.rglob("*.html"))
    pages = [p for p in pages if p.name != "404.html"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        doms = dict(zip(pages, pool.map(_render, pages), strict=True))
    parsed = {}
    for page, dom in doms.items():
        parser = _Links()
        parser.feed(dom)
        parsed[page.resolve()] = parser
    assert "Study config reference" in doms[site / "config.html"]
    broken = []
    for page, links in parsed.items():
        for href in links.hrefs:
            parts = urlsplit(href)
            if parts.scheme in ("http", "https", "mailto", "data", "javascript"):
                continue
            if parts.scheme == "file":
                target = Path(unquote(parts.path))
            elif parts.path:
                target = (page.parent / unquote(parts.path)).resolve()
            else:
                target = page
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                broken.append(f"{page.relative_to(site)}: {href} (no such file)")
            elif parts.fragment and target.suffix == ".html":
                ids = parsed[target].ids if target in parsed else _ids_of(target)
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{page.relative_to(site)}: {href} (no such anchor)")
    assert not broken, "\n".join(broken)
    assert len(parsed) >= len(_doc_pages())


def _ids_of(path: Path) -> set[str]:
    parser = _Links()
    parser.feed(path.read_text())
    return parser.ids
