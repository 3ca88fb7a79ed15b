"""The worker's TorchServe calls: one slice's explanation (answer + heatmap), the served version.

Tokens come from a :class:`~neuroscan.torchserve_keys.KeyKeeper` (the dashboard's too): it follows
TorchServe's key file and renews a key through the management ``/token`` API before it expires, so
the worker keeps working past ``token_expiration_min``. A refusal of the slice itself (4xx with the
handler's ``{"error", "code"}``) is that slice's answer; an unreachable or overloaded server is
:class:`ServerUnavailable`, which makes the worker retry the study later instead of failing it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from neuroscan.telemetry import outgoing_headers
from neuroscan.torchserve_keys import KeyKeeper, token_refused

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
                 renew_margin_s: float, retries: int = 3, management_key: str | None = None) -> None:
        self.inference_url, self.management_url = inference_url.rstrip("/"), management_url.rstrip("/")
        self.model, self.retries = model, retries
        # Kubernetes: one fixed key for the management proxy in front of every model-server pod
        # (docker/k8s/management-proxy-configmap.yaml) instead of TorchServe's own key file.
        self.management_key = management_key
        self._http = httpx.AsyncClient(timeout=timeout_s)
        self.keys = KeyKeeper(key_file, management_url, renew_margin_s, lambda: self._http)

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
        """Send with the current token; once more with a newer or renewed one if it was refused."""
        if api == "management" and self.management_key:
            return await self._send(method, url, self.management_key, **kwargs)
        key = await self.keys.token(api)
        response = await self._send(method, url, key, **kwargs)
        if token_refused(response):
            response = await self._send(method, url, await self.keys.refused(api, key), **kwargs)
        return response

    async def _send(self, method: str, url: str, key: str | None, **kwargs: Any) -> httpx.Response:
        headers = outgoing_headers(kwargs.get("headers"))
        if key:
            headers["Authorization"] = f"Bearer {key}"
        try:
            return await self._http.request(method, url, **{**kwargs, "headers": headers})
        except httpx.HTTPError as exc:
            raise ServerUnavailable(f"{method} {url}: {exc!r}") from exc


def _error_code(response: httpx.Response) -> str:
    try:
        return str(response.json().get("code", f"http_{response.status_code}"))
    except ValueError:
        return f"http_{response.status_code}"
