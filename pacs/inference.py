"""The worker's TorchServe calls: one slice's explanation (answer + heatmap), the served version.

Tokens come from TorchServe's key file, re-read whenever a token is refused (TorchServe writes
new keys when it restarts or when they are renewed). A refusal of the slice itself (4xx with the
handler's ``{"error", "code"}``) is that slice's answer; an unreachable or overloaded server is
:class:`ServerUnavailable`, which makes the worker retry the study later instead of failing it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from neuroscan.telemetry import outgoing_headers

# Statuses that say "not now" rather than "not this slice": retried, then the study waits.
_BUSY = frozenset({500, 502, 503, 504, 507})


class ServerUnavailable(RuntimeError):
    """TorchServe cannot be reached or has no worker for the model: try the study again later."""


@dataclass(frozen=True)
class SliceReply:
    """TorchServe's JSON answer for one slice, or the code of its refusal."""

    answer: dict[str, Any] | None
    error: str | None = None


class TorchServeCalls:
    """Pooled async calls to one TorchServe model."""

    def __init__(self, inference_url: str, management_url: str, key_file: Path, model: str, timeout_s: float,
                 retries: int = 3) -> None:
        self.inference_url, self.management_url = inference_url.rstrip("/"), management_url.rstrip("/")
        self.key_file, self.model, self.retries = key_file, model, retries
        self._http = httpx.AsyncClient(timeout=timeout_s)
        self._keys: dict[str, str] = {}

    async def aclose(self) -> None:
        await self._http.aclose()

    async def served_version(self) -> str:
        """The version ``/predictions/<model>`` answers with (the default one)."""
        response = await self._call("GET", f"{self.management_url}/models/{self.model}", "management")
        if not response.is_success:
            raise ServerUnavailable(f"describing {self.model}: {response.status_code} {response.text[:200]}")
        return str(response.json()[0]["modelVersion"])

    async def explain(self, body: bytes) -> SliceReply:
        """The answer and heatmap for one DICOM slice; retried while the server is busy."""
        url = f"{self.inference_url}/explanations/{self.model}"
        for attempt in range(self.retries):
            response = await self._call("POST", url, "inference", content=body,
                                        headers={"Content-Type": "application/octet-stream"})
            if response.is_success:
                return SliceReply(response.json())
            if response.status_code not in _BUSY:
                return SliceReply(None, _error_code(response))
            await asyncio.sleep(0.5 * (attempt + 1))
        raise ServerUnavailable(f"{url}: {response.status_code} after {self.retries} tries")

    async def _call(self, method: str, url: str, api: str, **kwargs: Any) -> httpx.Response:
        """Send with the current token; once more with re-read keys if the token was refused."""
        response = await self._send(method, url, api, **kwargs)
        if _token_refused(response):
            self._keys = {}
            response = await self._send(method, url, api, **kwargs)
        return response

    async def _send(self, method: str, url: str, api: str, **kwargs: Any) -> httpx.Response:
        headers = outgoing_headers(kwargs.pop("headers", None))
        if key := self._key(api):
            headers["Authorization"] = f"Bearer {key}"
        try:
            return await self._http.request(method, url, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise ServerUnavailable(f"{method} {url}: {exc!r}") from exc

    def _key(self, api: str) -> str | None:
        if not self._keys:
            try:
                raw = json.loads(self.key_file.read_text())
            except (OSError, ValueError):
                return None
            self._keys = {name: entry["key"] for name, entry in raw.items() if isinstance(entry, dict) and "key" in entry}
        return self._keys.get(api)


def _token_refused(response: httpx.Response) -> bool:
    """TorchServe answers a wrong or expired token with 400 InvalidKeyException, or 401."""
    if response.status_code == 401:
        return True
    return response.status_code == 400 and "InvalidKeyException" in response.text


def _error_code(response: httpx.Response) -> str:
    try:
        return str(response.json().get("code", f"http_{response.status_code}"))
    except ValueError:
        return f"http_{response.status_code}"
