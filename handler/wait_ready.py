"""Block until TorchServe has a READY worker for a model (``/ping`` says Healthy too early).

    python -m handler.wait_ready --key-file var/torchserve/key_file.json
"""

import argparse
import json
import sys
import time
from pathlib import Path

import httpx


def management_key(key_file: Path, timeout: float = 30.0) -> str:
    """The management token TorchServe wrote at start-up.

    The file appears a moment after start-up, and appears empty before it is written: read until it parses.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return json.loads(key_file.read_text())["management"]["key"]
        except (OSError, ValueError, KeyError) as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{key_file} holds no management key after {timeout:.0f}s: {exc}") from exc
            time.sleep(0.2)


def ready_workers(management_url: str, model: str, key: str) -> int:
    """Number of READY workers of the model's default version (0 while loading or on error)."""
    try:
        response = httpx.get(f"{management_url}/models/{model}", headers={"Authorization": f"Bearer {key}"}, timeout=5)
    except httpx.HTTPError:
        return 0
    if response.status_code != 200:
        return 0
    return sum(w.get("status") == "READY" for v in response.json() for w in v.get("workers", []))


def wait_ready(management_url: str, model: str, key_file: Path, timeout: float = 180.0) -> int:
    key = management_key(key_file)
    deadline = time.monotonic() + timeout
    while (count := ready_workers(management_url, model, key)) == 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no READY worker for {model} after {timeout:.0f}s")
        time.sleep(0.5)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--management-url", default="http://127.0.0.1:8081")
    parser.add_argument("--model", default="brain_tumor")
    parser.add_argument("--key-file", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args()
    try:
        count = wait_ready(args.management_url, args.model, args.key_file, args.timeout)
    except TimeoutError as exc:
        sys.exit(f"TorchServe not ready: {exc}")
    print(f"{args.model}: {count} worker(s) READY")


if __name__ == "__main__":
    main()
