"""A crowd on the demo: N concurrent gradio_client clients, each asking for images once.

    python benchmarks/demo_load.py --clients 50            # launches `python app.py` (the shipped union)
    python benchmarks/demo_load.py --clients 120 --model org/name@rev
    python benchmarks/demo_load.py --clients 50 --url http://127.0.0.1:7860/ --pid 1234   # a running server

Each client connects (as a visitor's page does) and calls ``/generate`` once. Every outcome is counted by
kind: ``ok`` (images), ``busy`` (the demo's clear "busy, try again" answer), ``app_error`` (another error
message from the app), ``dropped`` (the connection closed or failed mid-request), ``other``. Prints p50/p95
latency of the answered requests, throughput, the server's resident memory before and after, and whether
it still answers afterwards. Run it when the CPU is otherwise quiet.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from gradio_client import Client

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int | None) -> float | None:
    """Resident memory of a process (Linux /proc), in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, TypeError):
        pass
    return None


def connect(url: str, downloads: str, timeout: float = 120) -> Client:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return Client(url, verbose=False, analytics_enabled=False, download_files=downloads)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def outcome(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".lower()
    if "busy" in text or "queue is full" in text or "try again" in text:
        return "busy"
    if type(err).__name__ == "AppError":
        return "app_error"
    if any(word in text for word in ("connect", "closed", "disconnect", "incomplete", "reset", "eof",
                                     "protocol", "timeout", "timed out")):
        return "dropped"
    return "other"


def visitor(url, downloads, args, results, start):
    start.wait()
    began = time.perf_counter()
    try:
        client = Client(url, verbose=False, analytics_enabled=False, download_files=downloads)
        client.predict(*args, api_name="/generate")
        results.append(("ok", time.perf_counter() - began, ""))
    except Exception as err:  # every way a visitor can fail is what this measures
        results.append((outcome(err), time.perf_counter() - began, f"{type(err).__name__}: {err}"[:200]))


def crowd(url: str, clients: int, args: tuple, downloads: str) -> tuple[list, float]:
    results, start = [], threading.Event()
    threads = [threading.Thread(target=visitor, args=(url, downloads, args, results, start)) for _ in range(clients)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    start.set()
    for thread in threads:
        thread.join()
    return results, time.perf_counter() - began


def report(results, wall, rss_before, rss_after, after_ok):
    kinds = Counter(kind for kind, _, _ in results)
    answered = sorted(seconds for kind, seconds, _ in results if kind == "ok")
    print(f"clients: {len(results)}; outcomes: {dict(kinds)}")
    if answered:
        p95 = answered[min(len(answered) - 1, round(0.95 * (len(answered) - 1)))]
        print(f"latency of answered requests: p50 {statistics.median(answered):.2f} s, p95 {p95:.2f} s; "
              f"throughput {len(answered) / wall:.2f} answers/s over {wall:.1f} s")
    for kind in sorted(set(kinds) - {"ok"}):
        example = next(message for k, _, message in results if k == kind)
        print(f"  e.g. {kind}: {example}")
    if rss_before is not None:
        print(f"server RSS: {rss_before:.0f} MiB before, {rss_after:.0f} MiB after")
    print(f"server answers afterwards: {'yes' if after_ok else 'NO'}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--url", help="a running demo (default: launch app.py on a free port)")
    parser.add_argument("--pid", type=int, help="the running demo's process id, for its memory")
    parser.add_argument("--model", help="app.py --model (default: the shipped example union)")
    parser.add_argument("--class_name", help="class to generate (default: the model's first)")
    parser.add_argument("--seeds", default="0-7")
    args = parser.parse_args()
    server = None
    with tempfile.TemporaryDirectory() as downloads:
        url, pid = args.url, args.pid
        if url is None:
            port = free_port()
            command = [sys.executable, "app.py", "--port", str(port)] + (["--model", args.model] if args.model else [])
            server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            url, pid = f"http://127.0.0.1:{port}/", server.pid
        try:
            probe = connect(url, downloads)
            class_name = args.class_name or probe.view_api(print_info=False, return_format="dict")[
                "named_endpoints"]["/generate"]["parameters"][0]["parameter_default"]
            request = (class_name, args.seeds, 8, 0.7)
            probe.predict(*request, api_name="/generate")  # warm-up
            rss_before = rss_mib(pid)
            results, wall = crowd(url, args.clients, request, downloads)
            time.sleep(1)
            rss_after = rss_mib(pid)
            try:
                after_ok = bool(connect(url, downloads, timeout=10).predict(*request, api_name="/generate"))
            except Exception:
                after_ok = False
            report(results, wall, rss_before, rss_after, after_ok)
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=30)


if __name__ == "__main__":
    main()
