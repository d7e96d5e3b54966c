"""Shared by the headless-Chromium tests (FiftyOne App, JupyterLab): where screenshots go,
how Chromium is found and started, and whether a local port is served."""
from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
# offline, sandbox-less (root in containers), no background traffic that could stall a page load
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str:
    """Debian's chromium (installed by scripts/install-browser.sh); skip the test without it."""
    path = "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else shutil.which("chromium")
    if not path:
        pytest.skip("chromium is not installed (run scripts/install-browser.sh)")
    return path


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0
