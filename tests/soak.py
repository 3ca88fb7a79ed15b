"""``make soak``: the served model under steady load for a bounded time, through the dashboard's own client.

    python tests/soak.py [--minutes 10] [--fraction 0.8] [--log-max-mb 1]

Why: a day-one test cannot show what a week does (keys that expire, memory that creeps, logs that
fill the disk, a worker that dies under load). This starts its own TorchServe on 127.0.0.1 (shipped
config, JSON logs to files through config/log4j2-files.xml, capped at ``--log-max-mb`` per file so
rotation happens within the run), then:

1. calibrates: ``--clients`` concurrent ``TorchServeClient.explain`` calls (what the dashboard sends
   per upload) for ``--calibrate-s`` seconds give the best throughput of that call here;
2. drives an open loop at ``--fraction`` of it for ``--minutes``, one request every 1/rate seconds
   whatever the answers, so a slow server shows up as latency and errors, not as less load;
3. kills one worker (SIGKILL) at a quarter of the run; "settled" is 5 s after TorchServe has all its
   workers READY again;
4. samples every 2 s the workers' RSS and the log directory.

It prints and writes (``soak-results.json``) failed requests (all, and after the restart settled),
latency p50/p99, the workers' RSS growth over the second half, and log bytes written vs kept. Exits 1
when a request failed after settling, a worker's RSS grew more than 5% over the second half, or the
logs outgrew their bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from dashboard.client import ServerError, TorchServeClient
from dashboard.settings import load_settings
from tests.bench_serving import (
    MAR,
    Server,
    cold_start,
    start_server,
    stop_server,
    val_images,
)

LOG_CONFIG = REPO / "config" / "log4j2-files.xml"
RESULTS = REPO / "soak-results.json"
SAMPLE_S = 2.0
SETTLE_S = 5.0
MAX_RSS_GROWTH = 0.05


@dataclass
class Outcome:
    """One request of the open loop: when it was due, how long it took from then, and how it ended."""

    due: float
    latency_s: float
    error: str | None


@dataclass
class Samples:
    """What the sampler saw: (time, {worker pid: RSS MB}) and (time, log bytes on disk, log bytes written)."""

    rss: list[tuple[float, dict[int, float]]] = field(default_factory=list)
    logs: list[tuple[float, int, int]] = field(default_factory=list)


def client_for(server: Server, parallel: int) -> TorchServeClient:
    """The dashboard's client, configured as the dashboard would be for this server."""
    os.environ.update(NEUROSCAN_INFERENCE_URL=server.inference, NEUROSCAN_MANAGEMENT_URL=server.management,
                      NEUROSCAN_METRICS_URL=server.metrics, NEUROSCAN_KEY_FILE=str(server.home / "key_file.json"),
                      NEUROSCAN_MAX_PARALLEL_REQUESTS=str(parallel))
    return TorchServeClient(load_settings())


async def calibrate(client: TorchServeClient, images: list[bytes], clients: int, seconds: float) -> float:
    """Best explain() throughput (requests/s) with ``clients`` in a closed loop."""
    done = 0
    end = time.monotonic() + seconds

    async def loop(offset: int) -> None:
        nonlocal done
        while time.monotonic() < end:
            await client.explain(images[(offset + done) % len(images)])
            done += 1

    start = time.monotonic()
    await asyncio.gather(*(loop(i) for i in range(clients)))
    return done / (time.monotonic() - start)


async def drive(client: TorchServeClient, images: list[bytes], rate: float, seconds: float) -> list[Outcome]:
    """Open loop: request i is sent at start + i / rate, each in its own task."""
    start = time.monotonic()
    tasks = []
    for i in range(int(rate * seconds)):
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        tasks.append(asyncio.create_task(one(client, images[i % len(images)], due)))
    return list(await asyncio.gather(*tasks))


async def one(client: TorchServeClient, image: bytes, due: float) -> Outcome:
    try:
        await client.explain(image)
        error = None
    except ServerError as exc:
        error = exc.code
    return Outcome(due, time.monotonic() - due, error)


def workers(server: Server) -> list[dict]:
    return server.manage("GET", "/models/brain_tumor").json()[0]["workers"]


def rss_mb(pid: int) -> float | None:
    """Resident set size of ``pid`` from /proc, None once it is gone."""
    try:
        line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) / 1024


async def sample(server: Server, samples: Samples, stop: asyncio.Event) -> None:
    """Every SAMPLE_S: each worker's RSS, and the log directory's size; bytes written are counted through
    rotations (an active file that shrank was rotated: its old size was written too)."""
    logs = server.home / "logs"
    last: dict[str, int] = {}
    written = 0
    while not stop.is_set():
        pids = [w["pid"] for w in await asyncio.to_thread(workers, server)]
        samples.rss.append((time.monotonic(), {pid: mb for pid in pids if (mb := rss_mb(pid)) is not None}))
        for active in ("ts_log.log", "model_log.log"):
            size = (logs / active).stat().st_size if (logs / active).exists() else 0
            written += size - last.get(active, 0) if size >= last.get(active, 0) else size
            last[active] = size
        samples.logs.append((time.monotonic(), sum(f.stat().st_size for f in logs.iterdir()), written))
        await asyncio.sleep(SAMPLE_S)


async def kill_one_worker(server: Server, at: float) -> tuple[float, float]:
    """SIGKILL a worker at monotonic ``at``; returns (kill time, time all workers were READY again)."""
    await asyncio.sleep(max(0.0, at - time.monotonic()))
    before = await asyncio.to_thread(workers, server)
    victim = before[0]["pid"]
    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    while True:
        now = await asyncio.to_thread(workers, server)
        if len(now) == len(before) and all(w["status"] == "READY" and w["pid"] != victim for w in now):
            return killed, time.monotonic()
        await asyncio.sleep(0.5)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def rss_growth(samples: Samples, start: float, end: float) -> dict[int, float]:
    """Per worker alive over the second half: RSS growth, mean of its last 3 samples vs its first 3."""
    half = [(t, rss) for t, rss in samples.rss if t >= (start + end) / 2]
    lasting = set(half[0][1]) & set(half[-1][1]) if half else set()
    growth = {}
    for pid in lasting:
        series = [rss[pid] for _, rss in half if pid in rss]
        first, last = sum(series[:3]) / len(series[:3]), sum(series[-3:]) / len(series[-3:])
        growth[pid] = last / first - 1
    return growth


def report(args, best: float, rate: float, outcomes: list[Outcome], samples: Samples,
           restart: tuple[float, float], window: tuple[float, float], logs: Path) -> dict:
    settled = restart[1] + SETTLE_S
    after = [o for o in outcomes if o.due >= settled]
    growth = rss_growth(samples, *window)
    logs_bound = 2 * (1 + args.log_backups) * args.log_max_mb * 2**20  # two files, each active + backups
    return {
        "minutes": args.minutes, "best_explain_per_s": round(best, 1), "rate_per_s": round(rate, 1),
        "requests": len(outcomes), "failed": sum(o.error is not None for o in outcomes),
        "failed_by_code": {c: sum(o.error == c for o in outcomes) for c in {o.error for o in outcomes} if c},
        "failed_after_settle": sum(o.error is not None for o in after),
        "worker_restart_s": round(restart[1] - restart[0], 1),
        "p50_ms": round(1000 * percentile([o.latency_s for o in outcomes], 0.5), 1),
        "p99_ms": round(1000 * percentile([o.latency_s for o in outcomes], 0.99), 1),
        "p99_after_settle_ms": round(1000 * percentile([o.latency_s for o in after], 0.99), 1),
        "worker_rss_mb_end": {str(pid): round(mb, 1) for pid, mb in samples.rss[-1][1].items()},
        "worker_rss_growth_second_half": {str(pid): round(g, 4) for pid, g in growth.items()},
        "log_bytes_written": samples.logs[-1][2], "log_bytes_on_disk_end": samples.logs[-1][1],
        "log_bytes_on_disk_max": max(size for _, size, _ in samples.logs), "log_bytes_bound": int(logs_bound),
        "log_files_end": sorted(f.name for f in logs.iterdir()),
    }


async def soak(args, server: Server) -> dict:
    images = [body for body, _ in val_images(64)]
    client = client_for(server, parallel=256)
    try:
        best = await calibrate(client, images, args.clients, args.calibrate_s)
        rate = args.fraction * best
        seconds = args.minutes * 60
        print(f"best explain() throughput {best:.1f}/s; driving {rate:.1f}/s for {seconds:.0f} s", flush=True)
        samples, stop = Samples(), asyncio.Event()
        sampler = asyncio.create_task(sample(server, samples, stop))
        start = time.monotonic()
        killer = asyncio.create_task(kill_one_worker(server, start + seconds / 4))
        outcomes = await drive(client, images, rate, seconds)
        restart = await killer
        stop.set()
        await sampler
        return report(args, best, rate, outcomes, samples, restart, (start, time.monotonic()), server.home / "logs")
    finally:
        await client.aclose()


def verdict(result: dict) -> list[str]:
    """What failed the soak (empty: it passed)."""
    problems = []
    if result["failed_after_settle"]:
        problems.append(f"{result['failed_after_settle']} requests failed after the worker restart settled")
    if any(g > MAX_RSS_GROWTH for g in result["worker_rss_growth_second_half"].values()):
        problems.append(f"a worker's RSS grew more than {MAX_RSS_GROWTH:.0%} over the second half")
    if result["log_bytes_on_disk_max"] > result["log_bytes_bound"]:
        problems.append("the logs outgrew their bound")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--fraction", type=float, default=0.8, help="of the calibrated best throughput")
    parser.add_argument("--clients", type=int, default=24, help="concurrency of the calibration")
    parser.add_argument("--calibrate-s", type=float, default=20.0)
    parser.add_argument("--log-max-mb", type=float, default=1.0, help="per log file before it rotates")
    parser.add_argument("--log-backups", type=int, default=5)
    args = parser.parse_args()
    os.environ.update(NEUROSCAN_LOG_MAX_MB=str(args.log_max_mb), NEUROSCAN_LOG_BACKUPS=str(args.log_backups))
    with tempfile.TemporaryDirectory(prefix="neuroscan-soak-") as home:
        server = start_server(Path(home), MAR, log_config=LOG_CONFIG)
        try:
            cold_start(server, val_images(1)[0][0])
            result = asyncio.run(soak(args, server))
        finally:
            stop_server(server)
    result["problems"] = verdict(result)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    sys.exit(1 if result["problems"] else 0)


if __name__ == "__main__":
    main()
