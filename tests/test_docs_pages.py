"""`/docs` (Swagger UI) and `/redoc` (ReDoc) render the contract with no network but the
service's: their scripts, styles, fonts and favicon come from the service itself.

Each page is opened in a real headless Chromium against the running service, with every
host but 127.0.0.1 unresolvable and no proxy, as on a production network without internet;
the page's DOM, once its scripts have run, must show the operations of `/openapi.json`,
and Chromium's network log must show no request for the page to another host. With the
assets on public CDNs (FastAPI's defaults) both pages stay white there.
Without Chromium installed these tests are skipped, except in CI (the CI environment
variable set), where that is a failure: CI installs it (`make browser`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from wallet_api.devtools.server import ServiceProcess

#: What each page's script adds to its DOM once it has rendered the document.
RENDERED = {"/docs": 'class="swagger-ui', "/redoc": "redoc-wrap"}
#: Schemes of URLs that never leave the browser.
LOCAL_SCHEMES = ("data", "blob", "about", "chrome", "chrome-extension", "devtools")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def find_chromium() -> str | None:
    """CHROMIUM (a name or a path) if set, else Debian's `chromium` (or another build's
    name) on PATH."""
    names = [os.environ["CHROMIUM"]] if os.environ.get("CHROMIUM") else []
    for name in [*names, "chromium", "chromium-browser", "google-chrome"]:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    found = find_chromium()
    if found is None:
        reason = "chromium is not installed: `make browser` installs Debian's package"
        if in_ci():
            pytest.fail(f"{reason} (CI is set, and CI must install it)", pytrace=False)
        pytest.skip(reason)
    return found


@pytest.fixture(scope="module")
def operations(service: ServiceProcess) -> dict[str, str]:
    """Each documented operation's summary, by method and path (both pages show them)."""
    document = httpx.get(service.base_url + "/openapi.json", timeout=30).json()
    summaries = {
        f"{method.upper()} {path}": operation["summary"]
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict) and "summary" in operation
    }
    assert len(summaries) >= 5, summaries
    return summaries


def open_page(chromium: str, url: str, profile: Path) -> tuple[str, list[str]]:
    """The page's DOM after its scripts ran (10 s of virtual time: the clock waits for the
    network), and the URL of every request made for the page."""
    net_log = profile / "net-log.json"
    command = [
        chromium,
        "--headless",
        "--no-sandbox",  # root, and containers without user namespaces
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        # The browser's own requests (autofill's page classification, for one) are not the
        # page's: leave them out, and out of the network log.
        "--disable-features=AutofillServerCommunication,MediaRouter,OptimizationHints",
        # No proxy, and no name resolves but the service's address: a production network
        # without internet, whatever this machine's network allows.
        "--no-proxy-server",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--user-data-dir={profile}",
        f"--log-net-log={net_log}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout, page_requests(net_log, url)


def page_requests(net_log: Path, url: str) -> list[str]:
    """The URLs of the requests Chromium's network log shows made for the page at `url`:
    those whose network isolation key names the page's site first (the top frame). The
    browser's own background requests (its clock, component updates, accounts), which
    fail here, are keyed otherwise (`null null`)."""
    text = net_log.read_text(encoding="utf-8")
    try:
        log = json.loads(text)
    except json.JSONDecodeError:  # a log cut short ends without its closing brackets
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    page = urlsplit(url)
    requested = []
    for event in log["events"]:
        params: dict[str, Any] = event.get("params") or {}
        top_frame = urlsplit(str(params.get("network_isolation_key", "")).split(" ")[0])
        if event["type"] == start_job and (top_frame.scheme, top_frame.hostname) == (
            page.scheme,
            page.hostname,
        ):
            requested.append(str(params["url"]))
    assert url in requested, f"the network log shows no request for {url}: {net_log}"
    return requested


def outside(base_url: str, urls: list[str]) -> list[str]:
    """The URLs that are not the service's own."""
    origin = urlsplit(base_url)
    return sorted(
        {
            url
            for url in urls
            if urlsplit(url).scheme not in LOCAL_SCHEMES
            and (urlsplit(url).scheme, urlsplit(url).netloc) != (origin.scheme, origin.netloc)
        }
    )


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_docs_page_renders_every_operation_offline(
    chromium: str,
    service: ServiceProcess,
    operations: dict[str, str],
    tmp_path: Path,
    path: str,
) -> None:
    dom, requested = open_page(chromium, service.base_url + path, tmp_path)
    assert not outside(service.base_url, requested), (
        f"{path} asked for URLs outside the service: {outside(service.base_url, requested)}"
    )
    assert RENDERED[path] in dom, f"{path} rendered nothing (its script did not run):\n{dom[:2000]}"
    missing = {key: summary for key, summary in operations.items() if summary not in dom}
    assert not missing, f"{path} does not show these operations: {missing}"
    assert service.base_url + "/openapi.json" in requested


def test_the_assets_are_the_services(service: ServiceProcess) -> None:
    """The pages name only the service's own assets: no CDN, no web fonts."""
    for path in ("/docs", "/redoc"):
        page = httpx.get(service.base_url + path, timeout=30)
        assert page.status_code == 200
        references: list[str] = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        references += re.findall(r"url: '([^']+)'", page.text)
        assert references, page.text
        for reference in references:
            assert not urlsplit(reference).netloc, f"{path} loads {reference}"
            asset = httpx.get(service.base_url + reference, timeout=30)
            assert asset.status_code == 200, (path, reference)
