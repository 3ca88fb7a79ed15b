"""Start Orthanc from ``config/orthanc.json`` with generated credentials, under a home of its own.

    python -m pacs.orthanc --home var/orthanc [--http-port 8042] [--dicom-port 4242]

The committed file says how the PACS behaves; this adds only what differs per installation: the
storage folder, the ports, and the HTTP credentials, which are generated on first start into
``<home>/credentials.json`` (``{"username", "password"}``, mode 0600) and never have a default.
Orthanc runs in the foreground (``exec``), so whoever started this stops Orthanc with a signal.
"""

import argparse
import json
import os
import secrets
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# DCMTK (Orthanc's DICOM layer) leaves Nagle's algorithm on unless TCP_NODELAY=1: each C-STORE
# response then waits for a delayed ACK, and a 150-slice series took 10 s to store instead of 3 s.
ENVIRONMENT = {"TCP_NODELAY": "1"}
TEMPLATE = REPO / "config" / "orthanc.json"
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


def runtime_config(home: Path, http_port: int | None = None, dicom_port: int | None = None,
                   template: Path = TEMPLATE) -> Path:
    """Write ``<home>/orthanc.json``: the template plus storage, ports and the account."""
    config = json.loads(template.read_text())
    storage = home / "db"
    storage.mkdir(parents=True, exist_ok=True)
    account = credentials(home)
    config.update(StorageDirectory=str(storage), IndexDirectory=str(storage),
                  RegisteredUsers={account["username"]: account["password"]})
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
    args = parser.parse_args()
    binary = shutil.which("Orthanc")
    if binary is None:
        raise SystemExit("Orthanc is not installed: `make install` installs Debian's orthanc and orthanc-dicomweb")
    config = runtime_config(args.home.resolve(), args.http_port, args.dicom_port)
    os.execve(binary, [binary, f"--logdir={args.home.resolve()}", str(config)], environment())


if __name__ == "__main__":
    main()
