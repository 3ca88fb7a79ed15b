"""A compiled load generator for the bench: Debian's ``wrk`` with a Lua script posting real MRI bodies.

The httpx generator costs ~1.6 ms of CPU per request on the cores the server uses; wrk costs a
fraction of that, so what it measures is the server. It cannot read answers (a Lua response hook
would slow it down), so it counts non-2xx statuses only; accuracy, error bodies and cold start stay
with the httpx generator.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

# Bodies are read once per wrk thread in init(); request() cycles through them.
_SCRIPT = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/octet-stream"
local bodies, n = {}, 0
init = function(args)
  for i, path in ipairs(args) do
    local f = assert(io.open(path, "rb")); bodies[i] = f:read("*a"); f:close()
  end
end
request = function()
  n = n % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[n])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, ' ..
    '"p50_us": %d, "p95_us": %d, "p99_us": %d}\n', summary.requests, summary.duration, e.status,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(95),
    latency:percentile(99)))
end
"""


def run_wrk(url: str, authorization: str, bodies: list[bytes], concurrency: int, seconds: float,
            threads: int = 1) -> dict:
    """``concurrency`` keep-alive connections for ``seconds``; throughput, latency and wrk's own CPU."""
    with tempfile.TemporaryDirectory(prefix="wrk-") as tmp:
        folder = Path(tmp)
        script = folder / "post.lua"
        script.write_text(_SCRIPT)
        paths = []
        for i, body in enumerate(bodies):
            paths.append(folder / f"{i}.bin")
            paths[-1].write_bytes(body)
        command = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{seconds:.0f}s", "--timeout", "10s",
                   "-H", f"Authorization: {authorization}", "-s", str(script), url, "--", *map(str, paths)]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = process.stdout.read().decode()
        _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise RuntimeError(f"wrk failed ({status}): {output[-2000:]}")
    stats = json.loads(next(line for line in output.splitlines() if line.startswith("{")))
    duration = stats["duration_us"] / 1e6
    ok = stats["requests"] - stats["non2xx"]
    return {"concurrency": concurrency, "img_s": round(ok / duration, 1), "requests": stats["requests"],
            "errors": stats["non2xx"] + stats["socket_errors"], "p50_ms": round(stats["p50_us"] / 1000, 1),
            "p95_ms": round(stats["p95_us"] / 1000, 1), "p99_ms": round(stats["p99_us"] / 1000, 1),
            "generator_cpu_s": usage.ru_utime + usage.ru_stime, "duration_s": duration}
