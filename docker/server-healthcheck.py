"""Model-server health check (Docker HEALTHCHECK, Kubernetes startup probe): a model can answer.

Two steps, because neither is enough alone:
1. GET /ping on the inference port. TorchServe 0.12 puts it behind token authorization, and the
   key is minted at each start into key_file.json in the server's working directory, so the
   check reads it when the file exists (in Kubernetes token auth is off and there is none).
2. GET /models/<TS_HEALTH_MODEL> on the management port (pod/container loopback) and require
   at least one worker in state READY. /ping alone was seen answering "Healthy" while every
   worker crash-looped on a broken handler, which would route traffic to a server that only
   queues requests until they time out.
The keys expire (token_expiration_min): one that has expired is renewed through the management
/token API first (the recipe in the README), so a server nobody else keeps fresh (no dashboard
running) does not turn unhealthy a day after it started.
Exit 0 = healthy; anything else = not (with the reason on stderr).
"""

import json
import os
import sys
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

KEY_FILE = Path(os.environ.get("TS_KEY_FILE", "key_file.json"))
MODEL = os.environ.get("TS_HEALTH_MODEL", "brain_tumor")
INFERENCE_PORT = os.environ.get("TS_INFERENCE_PORT", "8080")
MANAGEMENT_PORT = os.environ.get("TS_MANAGEMENT_PORT", "8081")


def get(port: str, path: str, api: str) -> bytes:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if KEY_FILE.is_file():
        request.add_header("Authorization", f"Bearer {fresh_key(api)}")
    with urllib.request.urlopen(request, timeout=4) as response:
        return response.read()


def fresh_key(api: str) -> str:
    """The ``api`` key from the key file, renewed first when it has expired."""
    keys = json.loads(KEY_FILE.read_text())
    if datetime.fromisoformat(keys[api]["expiration time"]) > datetime.now(UTC):
        return keys[api]["key"]
    renew = urllib.request.Request(f"http://127.0.0.1:{MANAGEMENT_PORT}/token?type={api}", method="POST",
                                   headers={"Authorization": f"Bearer {keys['API']['key']}"})
    with urllib.request.urlopen(renew, timeout=4) as response:
        response.read()  # TorchServe has rewritten the file when it answers
    return json.loads(KEY_FILE.read_text())[api]["key"]


def main() -> int:
    try:
        get(INFERENCE_PORT, "/ping", "inference")
        described = json.loads(get(MANAGEMENT_PORT, f"/models/{MODEL}", "management"))
    except (OSError, ValueError, KeyError) as exc:  # URLError/HTTPError included
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    states = [w.get("status") for entry in described for w in entry.get("workers", [])]
    if "READY" not in states:
        print(f"unhealthy: no READY worker for {MODEL} (workers: {states})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
