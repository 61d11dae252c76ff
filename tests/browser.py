"""Headless Chromium for the tests that open a built page (the docs site, the report):
the one command line they share, and the skip-or-fail when Chromium is absent."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking")


def require_chromium(what: str) -> None:
    """Skip naming ``what`` was not opened when Chromium is absent; fail in CI, which
    installs it (.ci/run)."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing in CI (.ci/run installs it)")
        pytest.skip(f"{CHROMIUM} is absent: {what}")


def chromium(page: Path, *flags: str, budget_ms: int = 10000) -> str:
    """Run headless Chromium on ``page`` with ``flags`` after the shared ones and a
    virtual-time budget of ``budget_ms``; return its standard output (e.g. the DOM with
    ``--dump-dom``), failing with its standard error when it exits non-zero."""
    command = [str(CHROMIUM), *FLAGS, f"--virtual-time-budget={budget_ms}", *flags]
    result = subprocess.run([*command, page.as_uri()], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout
