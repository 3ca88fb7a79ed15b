"""Start Orthanc from ``config/orthanc.json`` with generated credentials, under a home of its own.

    python -m pacs.orthanc --home var/orthanc [--http-port 8042] [--dicom-port 4242]
                           [--dicom-senders 127.0.0.1,10.1.2.3]

The committed file says how the PACS behaves; this adds only what differs per installation: the
storage folder, the ports, the HTTP credentials, which are generated on first start into
``<home>/credentials.json`` (``{"username", "password"}``, mode 0600) and never have a default,
and the Lua filter that lets only the hosts in ``NeuroScanDicomSenders`` C-STORE (Orthanc 1.10
cannot bind its DICOM port to one address; ``NEUROSCAN_DICOM_SENDERS`` or ``--dicom-senders``
replace the list, ``*`` allows every host). ``--remote-access`` (or
``NEUROSCAN_ORTHANC_REMOTE_ACCESS=1``, set in the container image) opens the HTTP API to other hosts.
Orthanc runs in the foreground (``exec``), so whoever started this stops Orthanc with a signal.
"""

import argparse
import ipaddress
import json
import os
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# DCMTK (Orthanc's DICOM layer) leaves Nagle's algorithm on unless TCP_NODELAY=1: each C-STORE
# response then waits for a delayed ACK, and a 150-slice series took 10 s to store instead of 3 s.
ENVIRONMENT = {"TCP_NODELAY": "1"}
TEMPLATE = REPO / "config" / "orthanc.json"
SENDER_FILTER = REPO / "config" / "orthanc-dicom-senders.lua"
SENDERS_KEY = "NeuroScanDicomSenders"  # ours, not Orthanc's: taken out before Orthanc reads the file
ANY_SENDER = "*"
USERNAME = "neuroscan"


def credentials(home: Path) -> dict[str, str]:
    """The PACS account, created with a random password the first time."""
    path = home / "credentials.json"
    if path.is_file():
        return json.loads(path.read_text())
    home.mkdir(parents=True, exist_ok=True)
    created = {"username": USERNAME, "password": secrets.token_urlsafe(24)}
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(created, handle)
    return created


def sender_filter(home: Path, senders: Sequence[str]) -> Path:
    """Write ``<home>/dicom-senders.lua``: the committed filter with the allowed addresses above it."""
    allowed = ", ".join(f'["{ipaddress.ip_address(host.strip())}"] = true' for host in senders)
    path = home / "dicom-senders.lua"
    path.write_text(f"NEUROSCAN_DICOM_SENDERS = {{ {allowed} }}\n\n" + SENDER_FILTER.read_text())
    return path


def runtime_config(home: Path, http_port: int | None = None, dicom_port: int | None = None,
                   template: Path = TEMPLATE, senders: Sequence[str] | None = None,
                   remote_access: bool = False) -> Path:
    """Write ``<home>/orthanc.json``: the template plus storage, ports, the account and the sender
    filter (``senders`` replaces the template's list; ``["*"]`` installs no filter).
    ``remote_access`` lets other hosts reach the HTTP API (containers: the worker and the
    dashboard run in others); the account is required either way."""
    config = json.loads(template.read_text())
    committed_senders = config.pop(SENDERS_KEY)
    senders = list(senders if senders is not None else committed_senders)
    storage = home / "db"
    storage.mkdir(parents=True, exist_ok=True)
    account = credentials(home)
    config.update(StorageDirectory=str(storage), IndexDirectory=str(storage),
                  RegisteredUsers={account["username"]: account["password"]})
    if remote_access:
        config["RemoteAccessAllowed"] = True
    if ANY_SENDER not in senders:
        config["LuaScripts"] = [*config.get("LuaScripts", []), str(sender_filter(home, senders))]
    if http_port is not None:
        config["HttpPort"] = http_port
    if dicom_port is not None:
        config["DicomPort"] = dicom_port
    path = home / "orthanc.json"
    path.write_text(json.dumps(config, indent=1))
    path.chmod(0o600)  # it holds the password
    return path


def environment() -> dict[str, str]:
    """The environment Orthanc runs in: this process's, with :data:`ENVIRONMENT` on top."""
    return {**os.environ, **ENVIRONMENT}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=REPO / "var" / "orthanc")
    parser.add_argument("--http-port", type=int, default=None)
    parser.add_argument("--dicom-port", type=int, default=None)
    parser.add_argument("--dicom-senders", default=os.environ.get("NEUROSCAN_DICOM_SENDERS"),
                        help="comma-separated addresses allowed to C-STORE, or *")
    parser.add_argument("--remote-access", action="store_true",
                        default=os.environ.get("NEUROSCAN_ORTHANC_REMOTE_ACCESS") == "1",
                        help="let other hosts reach the HTTP API (the account is still required)")
    parser.add_argument("--log-to-stderr", action="store_true",
                        default=os.environ.get("NEUROSCAN_ORTHANC_LOG_TO_STDERR") == "1",
                        help="log to standard error (containers) instead of files in --home")
    args = parser.parse_args()
    binary = shutil.which("Orthanc")
    if binary is None:
        raise SystemExit("Orthanc is not installed: `make install` installs Debian's orthanc and orthanc-dicomweb")
    senders = args.dicom_senders.split(",") if args.dicom_senders else None
    config = runtime_config(args.home.resolve(), args.http_port, args.dicom_port, senders=senders,
                            remote_access=args.remote_access)
    log_files = [] if args.log_to_stderr else [f"--logdir={args.home.resolve()}"]
    os.execve(binary, [binary, *log_files, str(config)], environment())


if __name__ == "__main__":
    main()
