"""A bounded loopback load test of the real service process with a hot swap in the middle.

About ten seconds of concurrent clients (one-row requests, handled on the event loop, and
100-row batches, handled in worker threads) while ``production`` moves to the other
version and ``/admin/reload`` swaps it in. Longer runs belong in ``bench/``.
"""

from __future__ import annotations

import threading
import time

import httpx
import psutil

from conveyor.registry import tracking
from conveyor.registry.models import promote

LOAD_SECONDS = 10.0
MiB = 1 << 20


def test_hot_swap_under_load_fails_nothing_and_memory_stays_flat(service, settings):
    process = psutil.Process(service.proc.proc.pid)
    one = {"records": [service.record(3)]}
    batch = {"records": [service.record(i) for i in range(100)]}
    with httpx.Client(base_url=service.url, timeout=30) as warm:
        for i in range(50):
            assert warm.post("/predict", json=batch if i % 5 == 0 else one).status_code == 200
    rss_before = process.memory_info().rss
    old = service.client.get("/version").json()["version"]
    new = next(v for v in service.versions if v != old)

    # (monotonic start, status or 0 on a transport error, version or error text, rows)
    outcomes: list[tuple[float, int, str | None, int]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client_loop(body: dict) -> None:
        with httpx.Client(base_url=service.url, timeout=30) as client:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    response = client.post("/predict", json=body)
                    ok = response.status_code == 200
                    result = (
                        started,
                        response.status_code,
                        response.json()["model"]["version"] if ok else response.text[:200],
                        len(response.json()["predictions"]) if ok else 0,
                    )
                except httpx.HTTPError as exc:
                    result = (started, 0, repr(exc), 0)
                with lock:
                    outcomes.append(result)

    threads = [
        threading.Thread(target=client_loop, args=(body,), name=f"load-{i}")
        for i, body in enumerate([one, one, batch])
    ]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        time.sleep(LOAD_SECONDS / 2)
        promote(tracking.configure(settings), service.proc.pipeline, new, reason="load", actor="t")
        reload = service.client.post("/admin/reload", headers=service.admin())
        swapped_at = time.monotonic()
        time.sleep(max(0.0, began + LOAD_SECONDS - time.monotonic()))
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    rss_after = process.memory_info().rss

    assert reload.status_code == 200, reload.text
    assert reload.json()["changed"] is True and reload.json()["model"]["version"] == new
    failures = [o for o in outcomes if o[1] != 200]
    assert failures == [], failures[:5]
    assert {o[2] for o in outcomes} == {old, new}
    assert {o[3] for o in outcomes} == {1, 100}
    # Every request sent after the reload answered was served by the new version.
    assert {o[2] for o in outcomes if o[0] > swapped_at} == {new}
    assert len([o for o in outcomes if o[0] > swapped_at]) > 10
    growth = (rss_after - rss_before) / MiB
    print(
        f"\nload: {len(outcomes)} requests in {LOAD_SECONDS:g} s, 0 failed; "
        f"RSS {rss_before / MiB:.0f} -> {rss_after / MiB:.0f} MiB ({growth:+.0f} MiB, "
        "includes the second model)"
    )
    assert growth < 200, f"service RSS grew by {growth:.0f} MiB under load"
    assert service.healthy()
    assert service.client.get("/version").json()["version"] == new
