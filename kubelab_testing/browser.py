"""The dashboard as a browser meets it: its process on the host, and Debian's headless chromium.

:func:`running_dashboard` starts ``python -m agents.dashboard`` on a free loopback port against a lab's
API server (the kubeconfig gives its address and CA; every page's token is the user's own, never the
kubeconfig's credentials); :func:`headless_chromium` is a fresh browser with an empty profile, driven
by selenium through Debian's chromium-driver. The caller installs chromium first (the packages
chromium and chromium-driver).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubelab_testing.commands import stop
from kubelab_testing.lab import free_port
from kubelab_testing.waiting import NotInTime, answers, eventually
from provisioner.project import ROOT

START_WAIT = 30.0  # seconds the dashboard has to answer /healthz
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


class DashboardError(Exception):
    """The dashboard did not start: why, with the end of its log."""


@contextmanager
def running_dashboard(kubeconfig: Path, *, log: Path) -> Iterator[str]:
    """The dashboard on a free loopback port, its log in ``log``; yields its URL (ending in ``/``)."""
    port = free_port()
    argv = [sys.executable, "-m", "agents.dashboard", "--kubeconfig", str(kubeconfig), "--port", str(port)]
    with log.open("w") as written:
        process = subprocess.Popen(
            [*argv, "--bind-address", "127.0.0.1"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=written
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        try:
            eventually(lambda: answers(url + "healthz") or process.poll() is not None, timeout=START_WAIT)
        except NotInTime:
            raise DashboardError(f"the dashboard did not answer {url}healthz within {START_WAIT:.0f} s") from None
        if process.poll() is not None:
            tail = " | ".join(log.read_text().strip().splitlines()[-3:])
            raise DashboardError(f"the dashboard exited ({process.returncode}): {tail}")
        yield url
    finally:
        stop(process)


@contextmanager
def headless_chromium(*, width: int = 1400, height: int = 1000) -> Iterator[Any]:
    """A fresh headless chromium (selenium's WebDriver), quit at the end."""
    from selenium import webdriver  # noqa: PLC0415 - imported once the browser is known to be there
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


WAIT = 20.0  # seconds a page may take to show what a step waits for


def wait_for(driver: Any, css: str, *, timeout: float = WAIT) -> Any:
    """The first element matching ``css`` once the page shows one (at most ``timeout`` seconds)."""
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    return eventually(
        lambda: next(iter(driver.find_elements(By.CSS_SELECTOR, css)), None), timeout=timeout, what=f"the page's {css}"
    )


def text_of(driver: Any, css: str) -> str:
    return str(wait_for(driver, css).get_attribute("textContent") or "")


def log_in(driver: Any, url: str, token: str) -> None:
    """Open the dashboard at ``url`` with no cookie and log in with ``token``."""
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    driver.delete_all_cookies()
    driver.get(url)
    field = wait_for(driver, "#login:not([hidden]) #token")
    field.clear()
    field.send_keys(token)
    driver.find_element(By.ID, "login-button").click()


def services_drawn(driver: Any) -> set[str]:
    """The components whose spans the trace view draws."""
    found = driver.execute_script(
        "return [...document.querySelectorAll('svg#timeline g.span')].map(g => g.dataset.service);"
    )
    return set(found or [])


def pods_drawn(driver: Any) -> set[tuple[str, str, str]]:
    """(node, namespace/pod, IP) of every pod the architecture map draws."""
    found = driver.execute_script(
        "return [...document.querySelectorAll('svg#architecture g.node text.pod')]"
        ".map(t => [t.closest('g.node').dataset.node, t.dataset.pod, t.dataset.ip]);"
    )
    return {(str(node), str(pod), str(ip)) for node, pod, ip in found or []}
