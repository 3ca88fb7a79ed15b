"""TorchServe's tokens for long-running clients: read the key file, follow its changes, renew before expiry.

Why this exists: TorchServe 0.12 mints an inference and a management key at start, writes them with
their expiry ("expiration time", an ISO instant) to ``key_file.json`` next to a third, never-expiring
``API`` key, and refuses them once ``token_expiration_min`` has passed. It writes new keys only when
it restarts or when its management ``/token?type=inference|management`` API is called with the API
key, and a renewal invalidates the old key at once. A client that only re-reads the file therefore
stops working after one day of uptime. The dashboard and the PACS worker each hold one
:class:`KeyKeeper`; it lives in the core package because neither may import the other.

Two processes sharing one key file may both renew at nearly the same moment: each then sees the
other's renewal as a refused token, re-reads the file (which TorchServe has already rewritten) and
retries, so nothing fails.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

log = logging.getLogger(__name__)

APIS = ("inference", "management")
TOKEN_API = "API"
RETRY_S = 30.0  # after a failed renewal of a key that still works, wait this long before the next try


@dataclass(frozen=True)
class Keys:
    """One reading of the key file."""

    tokens: dict[str, str] = field(default_factory=dict)  # "inference", "management", "API" -> key
    expires: dict[str, datetime] = field(default_factory=dict)  # "inference", "management" -> UTC instant
    written: float = 0.0  # the file's mtime: when TorchServe last minted a key

    def lifetime_s(self) -> float | None:
        """How long TorchServe's keys live, seen from the key minted last (its expiry minus the write)."""
        spans = [at.timestamp() - self.written for at in self.expires.values()]
        return max(spans) if spans else None


def read_key_file(path: Path) -> Keys | None:
    """The keys in ``path``; ``None`` when it is absent or not (yet) valid JSON.

    TorchServe rewrites the file in place, so a reader can catch it empty or half written: the
    caller keeps the keys it had and looks again on its next call.
    """
    try:
        written = path.stat().st_mtime
        entries = {name: entry for name, entry in json.loads(path.read_text()).items() if isinstance(entry, dict)}
        tokens = {name: entry["key"] for name, entry in entries.items() if "key" in entry}
        expires = {name: _instant(entry["expiration time"]) for name, entry in entries.items()
                   if "expiration time" in entry}
    except (FileNotFoundError, ValueError, AttributeError):
        return None
    return Keys(tokens, expires, written)


def _instant(text: str) -> datetime:
    """Java's ``Instant.toString()`` (nanoseconds, ``Z``), which Python 3.11 parses to microseconds."""
    return datetime.fromisoformat(text).astimezone(UTC)


def _identity(path: Path) -> tuple[int, int, int] | None:
    """Inode, mtime and size: changes whenever TorchServe rewrites or recreates the file."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


class KeyKeeper:
    """The current inference and management tokens of one TorchServe, renewed before they expire.

    ``margin_s``: renew a key once it has less than this left (capped at half the keys' lifetime, so
    short-lived keys are not renewed on every call). ``http`` returns the caller's pooled client.
    """

    def __init__(self, key_file: Path, management_url: str, margin_s: float,
                 http: Callable[[], httpx.AsyncClient]) -> None:
        self.key_file = key_file
        self.management_url = management_url.rstrip("/")
        self.margin_s = margin_s
        self._http = http
        self._keys = Keys()
        self._seen: tuple[int, int, int] | None = None
        self._lock = asyncio.Lock()
        self._retry_at: dict[str, float] = {}
        self._reload()
        if self._seen is None:
            log.warning("TorchServe key file %s not found; calling without a token until it appears", key_file)

    @property
    def expires(self) -> dict[str, datetime]:
        """When each key expires, as last read from the key file."""
        self._reload()
        return dict(self._keys.expires)

    async def token(self, api: str) -> str | None:
        """The key for ``api`` to send now: renewed first when it is about to expire."""
        self._reload()
        if self._due(api) and time.monotonic() >= self._retry_at.get(api, 0.0):
            await self._renew_if(api, lambda: self._due(api))
        return self._keys.tokens.get(api)

    async def refused(self, api: str, sent: str | None) -> str | None:
        """TorchServe refused ``sent``: the key to retry with (a newer file's, or a renewed one)."""
        self._reload()
        await self._renew_if(api, lambda: self._keys.tokens.get(api) == sent)
        return self._keys.tokens.get(api)

    async def renew(self, api: str) -> bool:
        """Ask TorchServe for a new ``api`` key now (the operator's button); whether it gave one."""
        return await self._renew_if(api, lambda: True)

    async def keep_fresh(self, every_s: float) -> None:
        """Renew due keys every ``every_s`` seconds, also while nobody calls (runs until cancelled),
        so the key file stays valid for everyone who reads it."""
        while True:
            self._reload()
            for api in APIS:
                if self._due(api):
                    await self._renew_if(api, lambda api=api: self._due(api))
            await asyncio.sleep(every_s)

    async def _renew_if(self, api: str, needed: Callable[[], bool]) -> bool:
        """Renew ``api`` unless, once this caller holds the lock, the fresh file shows it is no longer
        ``needed``: concurrent callers that found the same key due (or refused) renew it once, not once
        each (each renewal would invalidate the key the previous one just handed out)."""
        async with self._lock:
            self._reload()
            if not needed():
                return True
            renewed = await self._post_renewal(api)
            # a failed renewal is not retried on every call (each would log); a refused key still is
            self._retry_at[api] = 0.0 if renewed else time.monotonic() + RETRY_S
            return renewed

    async def _post_renewal(self, api: str) -> bool:
        """``POST /token?type=api`` with the API key. Failures are logged, not raised: the old key may
        still work, and the caller's own request reports the real failure."""
        api_key = self._keys.tokens.get(TOKEN_API)
        if api_key is None:
            log.warning("cannot renew the TorchServe %s key: no API key in %s", api, self.key_file)
            return False
        try:
            response = await self._http().post(f"{self.management_url}/token", params={"type": api},
                                               headers={"Authorization": f"Bearer {api_key}"})
        except httpx.HTTPError as exc:
            log.warning("renewing the TorchServe %s key failed: %r", api, exc)
            return False
        if not response.is_success:
            log.warning("TorchServe refused to renew the %s key: %s %s", api, response.status_code,
                        response.text[:200])
            return False
        self._reload(quiet=True)
        log.info("renewed the TorchServe %s key; it now expires at %s", api, self._expiry_text(api))
        return True

    def _due(self, api: str) -> bool:
        expires = self._keys.expires.get(api)
        if expires is None:
            return False
        lifetime = self._keys.lifetime_s()
        margin = min(self.margin_s, lifetime / 2) if lifetime else self.margin_s
        return expires.timestamp() - time.time() <= margin

    def _reload(self, quiet: bool = False) -> None:
        """Re-read the key file when it changed on disk; say so when its keys are not the ones we held."""
        identity = _identity(self.key_file)
        if identity == self._seen:
            return
        keys = read_key_file(self.key_file)
        if keys is None:
            if identity is None and self._seen is not None:
                log.warning("TorchServe key file %s is gone (server stopped?); calling without a token",
                            self.key_file)
                self._keys, self._seen = Keys(), None
            return  # half written: keep the old keys and look again next time
        changed = sorted(api for api in (*APIS, TOKEN_API) if keys.tokens.get(api) != self._keys.tokens.get(api))
        first = not self._keys.tokens
        self._keys, self._seen = keys, identity
        if changed and not quiet:
            log.info("%s TorchServe key file %s: new %s key(s); inference expires at %s, management at %s",
                     "read" if first else "picked up a changed", self.key_file, ", ".join(changed),
                     self._expiry_text("inference"), self._expiry_text("management"))

    def _expiry_text(self, api: str) -> str:
        expires = self._keys.expires.get(api)
        return expires.isoformat(timespec="seconds") if expires else "unknown"



def token_refused(response: httpx.Response) -> bool:
    """Whether TorchServe refused the token: 400 ``InvalidKeyException`` for a wrong or expired key
    (its own API), or 401 (in front of a proxy). Callers then ask :meth:`KeyKeeper.refused`."""
    if response.status_code == 401:
        return True
    if response.status_code != 400:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("type") == "InvalidKeyException"
