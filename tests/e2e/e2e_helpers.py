"""Helpers of the browser tests: a `streamlit run` server on a free loopback port, DOM readers, waits."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = PROJECT / "test-artifacts"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StreamlitServer:
    def __init__(self, db_path: Path, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log_path, "w")
        env = dict(os.environ, UTS_DB=str(db_path))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.address", "127.0.0.1", "--server.port", str(self.port),
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
            cwd=PROJECT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_healthy(self, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.process.returncode}; see {self.log.name}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as response:
                    if response.read().decode().strip() == "ok":
                        return
            except OSError:
                pass
            time.sleep(0.2)  # polling the server's own health endpoint, not waiting for the UI
        raise TimeoutError(f"streamlit not healthy after {timeout_s} s; see {self.log.name}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()



def wait_for_app_idle(page, timeout_ms: int = 60_000) -> None:
    """Wait on the app's own state: the script has finished its run and the page has let go of the elements of
    the previous run (Streamlit marks them data-stale and removes them a moment later; a locator that runs before
    that sees two copies of a form, as a loaded CI machine showed)."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout_ms)
    page.wait_for_function("""() => !document.querySelector('[data-testid="stElementContainer"][data-stale="true"]')""",
                           timeout=timeout_ms)


def wait_for_rerun(page, timeout_ms: int = 60_000) -> None:
    """After an interaction: let the rerun it triggers start (it may already be over), then finish."""
    try:
        page.wait_for_selector('[data-testid="stApp"][data-test-script-state="running"]', timeout=2_000)
    except Exception:  # noqa: BLE001 - a fast rerun can start and end before we look; idle is what matters
        pass
    wait_for_app_idle(page, timeout_ms)


def metric_value(page, label: str) -> str:
    metric = page.locator('[data-testid="stMetric"]').filter(
        has=page.locator('[data-testid="stMetricLabel"]', has_text=label)).first
    return metric.locator('[data-testid="stMetricValue"]').inner_text().strip()


def fill_text_input(page, label: str, value: str) -> None:
    """Type into a Streamlit text input and commit it (Enter), then wait for the rerun to finish."""
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")
    wait_for_rerun(page)


def pick_in_multiselect(page, label: str, option: str) -> None:
    widget = page.locator('[data-testid="stMultiSelect"]').filter(has_text=label)
    widget.locator("input").click()  # opens the dropdown; typing then filters its options
    page.keyboard.type(option)
    page.get_by_role("option", name=option, exact=True).click()
    page.keyboard.press("Escape")
    wait_for_rerun(page)
