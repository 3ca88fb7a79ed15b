"""Async TorchServe client: inference, explanations, management and metrics, with token auth.

Every failure becomes a :class:`ServerError` whose ``message`` a clinician can act on; the technical
detail goes into the exception text for the log. Tokens come from a
:class:`~neuroscan.torchserve_keys.KeyKeeper`, which follows TorchServe's key file (rewritten at each
restart) and renews the keys through the management API before they expire (they last a day).
"""

import asyncio
import logging
from datetime import datetime
from typing import Any

import httpx

from dashboard.settings import Settings
from neuroscan.telemetry import outgoing_headers
from neuroscan.torchserve_keys import KeyKeeper, token_refused

log = logging.getLogger(__name__)


# Failures an operator must fix (reported to Sentry); the rest are bad inputs or passing load.
OPERATOR_FAULTS = frozenset({"unauthorised", "model_not_found", "server_error"})


class ServerError(Exception):
    """A TorchServe call that did not give a usable answer."""

    def __init__(self, message: str, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail or message}")
        self.message = message
        self.code = code

    @property
    def log_level(self) -> int:
        """ERROR (a Sentry event) for operator faults, WARNING for refused inputs and busy or stopped servers."""
        return logging.ERROR if self.code in OPERATOR_FAULTS else logging.WARNING


class TorchServeClient:
    """One pooled httpx client for the three TorchServe APIs of one model."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._http: httpx.AsyncClient | None = None
        self.keys = KeyKeeper(settings.key_file, settings.management_url, settings.key_renew_margin_s,
                              lambda: self.http)
        self._parallel = asyncio.Semaphore(settings.max_parallel_requests)

    @property
    def http(self) -> httpx.AsyncClient:
        """Created on first use so it binds to the running event loop."""
        if self._http is None:
            timeout = httpx.Timeout(self.settings.inference_timeout_s, connect=self.settings.connect_timeout_s)
            self._http = httpx.AsyncClient(timeout=timeout)
        return self._http

    async def aclose(self) -> None:
        """Close the connection pool (at app shutdown)."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def explain(self, image: bytes) -> dict[str, Any]:
        """Prediction plus Grad-CAM heatmap for one image; parallel calls are capped so batches queue here."""
        async with self._parallel:
            url = f"{self.settings.inference_url}/explanations/{self.settings.model_name}"
            return (await self._call("POST", url, "inference", content=image,
                                     headers={"Content-Type": "application/octet-stream"})).json()

    async def ping(self) -> str:
        """TorchServe's health word ("Healthy", "Partial Healthy", ...)."""
        response = await self._call("GET", f"{self.settings.inference_url}/ping", "inference",
                                    timeout=self.settings.connect_timeout_s)
        return str(response.json().get("status", "Unknown"))

    async def describe(self) -> list[dict[str, Any]]:
        """Every registered version of the model, each with its workers."""
        url = f"{self.settings.management_url}/models/{self.settings.model_name}/all"
        return (await self._call("GET", url, "management")).json()

    async def default_version(self) -> str:
        """The version TorchServe serves when none is named."""
        url = f"{self.settings.management_url}/models/{self.settings.model_name}"
        return str((await self._call("GET", url, "management")).json()[0]["modelVersion"])

    async def scale(self, version: str, workers: int) -> None:
        """Set the worker count of ``version`` and wait until TorchServe has started or stopped them."""
        url = f"{self.settings.management_url}/models/{self.settings.model_name}/{version}"
        params = {"min_worker": workers, "max_worker": workers, "synchronous": "true"}
        await self._call("PUT", url, "management", params=params, timeout=self.settings.management_timeout_s)

    async def set_default(self, version: str) -> None:
        """Make ``version`` the one served by ``/predictions/<model>``."""
        url = f"{self.settings.management_url}/models/{self.settings.model_name}/{version}/set-default"
        await self._call("PUT", url, "management")

    def key_expiry(self) -> dict[str, datetime]:
        """When the inference and management keys expire (the operator page shows it)."""
        return self.keys.expires

    async def renew_keys(self) -> bool:
        """Renew both keys now (the operator's button); whether TorchServe renewed both."""
        return all([await self.keys.renew(api) for api in ("inference", "management")])

    async def metrics_text(self) -> str:
        """The Prometheus text exposition of TorchServe's metrics endpoint (no token needed)."""
        return (await self._call("GET", f"{self.settings.metrics_url}/metrics", None)).text

    async def _call(self, method: str, url: str, api: str | None, **kwargs: Any) -> httpx.Response:
        """Send once, and once more with a newer or renewed key if the token is refused; failures become
        ServerError."""
        key = await self.keys.token(api) if api is not None else None
        response = await self._send(method, url, key, **kwargs)
        if api is not None and token_refused(response):
            key = await self.keys.refused(api, key)
            response = await self._send(method, url, key, **kwargs)
        if response.is_success:
            return response
        raise _http_error(response, self.settings)

    async def _send(self, method: str, url: str, key: str | None, **kwargs: Any) -> httpx.Response:
        headers = outgoing_headers(kwargs.get("headers"))  # adds X-Request-ID for TorchServe's logs
        if key:
            headers["Authorization"] = f"Bearer {key}"
        kwargs = {**kwargs, "headers": headers}
        try:
            return await self.http.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise ServerError("The analysis server did not answer in time. It may be busy: please try again "
                              "in a moment.", "timeout", f"{method} {url}: {exc!r}") from exc
        except httpx.TransportError as exc:
            raise ServerError("The analysis server cannot be reached. It may be stopped or still starting: "
                              "please try again in a minute, or tell your operator.", "unavailable",
                              f"{method} {url}: {exc!r}") from exc


def _http_error(response: httpx.Response, settings: Settings) -> ServerError:
    """Map TorchServe's status codes (and the handler's ``{"error", "code"}`` bodies) to plain words."""
    detail = f"{response.request.method} {response.request.url} -> {response.status_code}: {response.text[:500]}"
    status = response.status_code
    if status in (401, 403) or token_refused(response):
        return ServerError("The dashboard is not authorised by the analysis server. An operator needs to check "
                           f"the TorchServe key file ({settings.key_file}).", "unauthorised", detail)
    if status == 404:
        return ServerError(f"The model '{settings.model_name}' is not loaded on the analysis server.",
                           "model_not_found", detail)
    if status == 413:
        return ServerError("The file is larger than the analysis server accepts. Please export a smaller image.",
                           "image_too_large", detail)
    if status in (503, 507):
        return ServerError("The analysis server has no free worker for this model right now. Please try again "
                           "shortly.", "no_workers", detail)
    body = _json_or_empty(response)
    if 400 <= status < 500 and "error" in body:
        return ServerError(str(body["error"]), str(body.get("code", "rejected")), detail)
    return ServerError("The analysis server could not process this request.", "server_error", detail)


def _json_or_empty(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
