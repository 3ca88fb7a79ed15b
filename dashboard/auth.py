"""Accounts: salted scrypt password hashes in a JSON file, two roles, and the first-run admin.

No password is ever stored or logged in plain text; a missing admin is created from
``NEUROSCAN_ADMIN_PASSWORD`` or, failing that, from a random password printed once to the
console, because a fixed default password is how dashboards get breached.
"""

import base64
import functools
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

ROLES: tuple[str, ...] = ("clinician", "admin")
ADMIN_PASSWORD_ENV = "NEUROSCAN_ADMIN_PASSWORD"
# scrypt cost: about 50 ms and 16 MiB per check, slow for brute force but fine for a sign-in.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_SALT_BYTES = 16
_MIN_PASSWORD_LENGTH = 10


@dataclass(frozen=True)
class Account:
    """One dashboard user: the name they sign in with, their role and their password hash."""

    username: str
    role: str
    password_hash: str


def hash_password(password: str) -> str:
    """A self-describing ``scrypt$n$r$p$salt$digest`` string with a fresh random salt."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return "$".join(["scrypt", str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P), _b64(salt), _b64(digest)])


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded``; constant-time, and False for malformed hashes."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        actual = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, base64.b64decode(digest))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class AccountStore:
    """The accounts file: ``{"accounts": [{"username", "role", "password_hash"}, ...]}``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Account]:
        """All accounts by user name (empty before the first run)."""
        if not self.path.exists():
            return {}
        rows = json.loads(self.path.read_text())["accounts"]
        return {row["username"]: Account(**row) for row in rows}

    def add(self, username: str, password: str, role: str) -> Account:
        """Create or replace an account; rejects unknown roles and short passwords."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        if len(password) < _MIN_PASSWORD_LENGTH:
            raise ValueError(f"passwords need at least {_MIN_PASSWORD_LENGTH} characters")
        accounts = self.load()
        accounts[username] = Account(username, role, hash_password(password))
        self._save(accounts)
        return accounts[username]

    def authenticate(self, username: str, password: str) -> Account | None:
        """The account if the password is right, else None (an unknown name costs the same time)."""
        account = self.load().get(username.strip())
        if account is None:
            verify_password(password, _dummy_hash())
            return None
        return account if verify_password(password, account.password_hash) else None

    def ensure_admin(self, username: str, environ: dict[str, str] | None = None) -> str | None:
        """Create the first admin if no admin exists; return the password only if it was generated."""
        if any(a.role == "admin" for a in self.load().values()):
            return None
        environ = os.environ if environ is None else environ
        password = environ.get(ADMIN_PASSWORD_ENV)
        generated = None if password else secrets.token_urlsafe(12)
        self.add(username, password or generated, "admin")
        return generated

    def _save(self, accounts: dict[str, Account]) -> None:
        """Write atomically with owner-only permissions: the hashes are still worth protecting."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"accounts": [asdict(a) for a in accounts.values()]}, handle, indent=2)
        tmp.replace(self.path)


@functools.cache
def _dummy_hash() -> str:
    """A hash to check unknown names against, so timing does not reveal which names exist."""
    return hash_password(secrets.token_urlsafe(16))
