"""The web app in Chromium: page load, fit-form redraw latency, and 20 concurrent API clients on /api/fit.

    python benchmarks/web.py [--loads 5] [--redraws 30] [--clients 20] [--requests 10]

Starts the real server (uvicorn in a thread, a temporary ONECARD_HOME with two small runs) and Debian's Chromium
(/usr/bin/chromium) through Playwright, headless. Prints:
  - first contentful paint of each page (`performance.getEntriesByName('first-contentful-paint')`), median of
    --loads loads, each in a fresh browser context (nothing cached);
  - fit-form redraw: from an input change (the batch field) to the verdict's text changing, median and p90 of
    --redraws changes; it includes the page's 50 ms debounce and both requests (/api/fit and /api/fit/solve);
  - --clients threads each POSTing --requests SDXL plans to /api/fit at once: errors, latency, requests/s.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REDRAW_JS = """async ([value]) => {
  const verdict = document.querySelector('#verdict');
  const before = verdict.textContent;
  const changed = new Promise(done => new MutationObserver((_, obs) => {
    if (verdict.textContent !== before) { obs.disconnect(); done(performance.now()); }
  }).observe(verdict, {childList: true, characterData: true, subtree: true}));
  const input = document.querySelector('#job [name=batch]');
  const t0 = performance.now();
  input.value = value;
  input.dispatchEvent(new Event('input', {bubbles: true}));
  return (await changed) - t0;
}"""
FCP_JS = "() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null"


def start_server(home: Path) -> tuple[str, object]:
    import uvicorn

    from onecard.web.app import create_app
    from onecard.web.settings import WebSettings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(WebSettings(port=port, data_dir=home)), host="127.0.0.1",
                                           port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return f"http://127.0.0.1:{port}", server


def make_runs(home: Path) -> None:
    from pydantic import BaseModel

    from onecard.core.records import start_run

    class Cfg(BaseModel):
        lr: float

    for lr in (0.1, 0.2):
        with start_run("demo", Cfg(lr=lr), report_to=(), runs_root=home / "runs") as run:
            for step in range(1, 51):
                run.log({"train/loss": 3 / (1 + lr * step)}, step=step)
            run.set_metrics({"loss": 3 / (1 + lr * 50)})


def page_loads(browser: object, base: str, loads: int) -> list[tuple[str, float]]:
    from onecard.web.app import PAGES

    rows = []
    for url in PAGES:
        fcps = []
        for _ in range(loads):
            context = browser.new_context()  # type: ignore[attr-defined]
            page = context.new_page()
            page.goto(base + url, wait_until="load")
            page.wait_for_function("() => performance.getEntriesByName('first-contentful-paint').length > 0")
            fcps.append(page.evaluate(FCP_JS))
            context.close()
        rows.append((url, statistics.median(fcps)))
    return rows


def redraws(browser: object, base: str, n: int) -> list[float]:
    context = browser.new_context()  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(base + "/fit")
    page.locator("#job [name=gpu]").select_option("rtx-4070-ti")
    page.locator("#job [name=model]").fill("sdxl")
    page.locator("#job [name=vae_slicing]").wait_for()
    page.locator("#job [name=resolution]").fill("1024")
    page.wait_for_function("() => document.querySelector('#verdict').textContent.includes('GiB')")
    page.wait_for_timeout(300)
    times = [page.evaluate(REDRAW_JS, [str(2 + i % 3)]) for i in range(n)]  # batch 2, 3, 4, 2...: a new verdict
    context.close()
    return times


def concurrent(base: str, clients: int, requests: int) -> tuple[int, int, list[float], float]:
    import httpx

    body = {"model": "sdxl", "gpu": "4070ti", "batch": 4, "resolution": 1024}
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client() -> None:
        nonlocal errors
        with httpx.Client(base_url=base, timeout=60) as http:
            barrier.wait()
            for _ in range(requests):
                t = time.perf_counter()
                try:
                    ok = http.post("/api/fit", json=body).status_code == 200
                except httpx.HTTPError:
                    ok = False
                with lock:
                    latencies.append(time.perf_counter() - t)
                    errors += not ok

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return clients * requests, errors, latencies, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--redraws", type=int, default=30)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=10)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    home = Path(tempfile.mkdtemp(prefix="onecard-web-bench-"))
    os.environ["ONECARD_HOME"] = str(home)
    make_runs(home)
    base, _ = start_server(home)
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; server and browser on the same machine")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"])
        print(f"\n{'page':10s} {'first contentful paint ms (median of ' + str(args.loads) + ')':>44s}")
        for url, fcp in page_loads(browser, base, args.loads):
            print(f"{url:10s} {fcp:44.0f}")
        times = sorted(redraws(browser, base, args.redraws))
        print(f"\nfit redraw (input -> verdict, incl. 50 ms debounce), {len(times)} changes: median "
              f"{statistics.median(times):.0f} ms, p90 {times[int(0.9 * (len(times) - 1))]:.0f} ms, "
              f"best {times[0]:.0f} ms")
        browser.close()
    total, errors, latencies, wall = concurrent(base, args.clients, args.requests)
    latencies.sort()
    print(f"\n/api/fit, {args.clients} concurrent clients x {args.requests} requests: {errors} errors of {total}; "
          f"latency median {1000 * statistics.median(latencies):.0f} ms, p95 "
          f"{1000 * latencies[int(0.95 * (len(latencies) - 1))]:.0f} ms; {total / wall:.0f} requests/s")


if __name__ == "__main__":
    main()
