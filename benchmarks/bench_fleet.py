"""A fleet sharing flag definitions through Redis (issue #16): N real processes, one
redis-server, one fake PostHog, poll interval shortened to 1 s.

Measures the requests per minute that reach ``/flags/definitions`` (they must stay at
one process's rate; the ratio to N independent processes is printed) and how long
every process takes to see a new definition (it must be within two intervals).

    python benchmarks/bench_fleet.py                 # 16 processes, 20 s
    python benchmarks/bench_fleet.py --processes 64  # the issue's fleet size

Needs ``redis-server`` on PATH (Debian package) and ``posthog-otel[redis]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

from posthog_otel.testing import FakePostHog

ROOT = Path(__file__).resolve().parent.parent

_WORKER = textwrap.dedent(
    """
    import sys, time
    from posthog_otel import Client
    from posthog_otel.flags.redis import RedisFlagDefinitionCache

    host, url, poll = sys.argv[1], sys.argv[2], float(sys.argv[3])
    provider = RedisFlagDefinitionCache(url, namespace="bench", lock_ttl=3 * poll)
    client = Client("phc_bench_key_0123456789", host=host, secret_key="phs_bench",
                    feature_flags_poll_interval=poll, flag_definition_cache_provider=provider)
    client.flags.definitions(wait=False)
    seen = set()
    while True:
        loaded = client.flags.loader.definitions
        for key in (loaded.flags if loaded is not None else ()):
            if key not in seen:
                seen.add(key)
                print(key, time.time(), flush=True)
        time.sleep(0.02)
    """
)


def _definitions(generation: int) -> dict[str, object]:
    flag = {"id": generation, "key": f"gen-{generation}", "active": True,
            "filters": {"groups": [{"rollout_percentage": 100}]}}  # fmt: skip
    return {"flags": [flag], "group_type_mapping": {}, "cohorts": {}}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _requests(server: FakePostHog) -> int:
    return sum(1 for r in server.requests if r.path == "/flags/definitions")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0, help="steady-state window")
    parser.add_argument("--interval", type=float, default=1.0, help="poll interval (s)")
    args = parser.parse_args()
    exe = shutil.which("redis-server")
    if exe is None:
        sys.exit("redis-server not found (apt-get install redis-server)")
    port, workdir = _free_port(), tempfile.mkdtemp()
    redis_proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    seen: dict[str, list[float]] = {}
    lock = threading.Lock()
    workers: list[subprocess.Popen[str]] = []
    with FakePostHog(flag_definitions=_definitions(0)) as server:
        try:
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            for _ in range(args.processes):
                proc = subprocess.Popen(
                    [sys.executable, "-c", _WORKER, server.url, url, str(args.interval)],
                    stdout=subprocess.PIPE,
                    text=True,
                    env=env,
                )
                workers.append(proc)

                def read(proc: subprocess.Popen[str] = proc) -> None:
                    assert proc.stdout is not None
                    for line in proc.stdout:
                        key, at = line.split()
                        with lock:
                            seen.setdefault(key, []).append(float(at))

                threading.Thread(target=read, daemon=True).start()

            def everyone_has(key: str) -> bool:
                with lock:
                    return len(seen.get(key, ())) == args.processes

            deadline = time.monotonic() + 120
            while not everyone_has("gen-0"):
                if time.monotonic() > deadline:
                    sys.exit("the fleet did not load its first definitions in 120 s")
                time.sleep(0.05)
            print(f"{args.processes} processes loaded; steady state for {args.seconds:.0f} s")
            before, start = _requests(server), time.monotonic()
            time.sleep(args.seconds)
            window, count = time.monotonic() - start, _requests(server) - before
            per_minute = count * 60 / window
            one = 60 / args.interval
            independent = args.processes * one
            print(
                f"/flags/definitions: {per_minute:.0f} requests/min (one process polls "
                f"{one:.0f}/min; {args.processes} independent processes: {independent:.0f}/min;"
                f" ratio {per_minute / independent:.3f})"
            )
            changes = []
            for generation in (1, 2, 3):
                changed = time.time()
                server.set_flag_definitions(_definitions(generation))
                key = f"gen-{generation}"
                deadline = time.monotonic() + 30 * args.interval
                while not everyone_has(key) and time.monotonic() < deadline:
                    time.sleep(0.02)
                with lock:
                    times = seen.get(key, [])
                    if len(times) < args.processes:
                        print(f"{key}: only {len(times)}/{args.processes} processes saw it")
                        continue
                    latency = max(times) - changed
                changes.append(latency)
                print(
                    f"{key}: every process saw it after {latency:.2f} s "
                    f"({latency / args.interval:.2f} intervals)"
                )
            if changes:
                print(f"worst: {max(changes) / args.interval:.2f} intervals (bound: 2)")
        finally:
            for proc in workers:
                proc.send_signal(signal.SIGKILL)
            for proc in workers:
                proc.wait()
            redis_proc.terminate()
            redis_proc.wait()
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
