"""Docker HEALTHCHECK of the Orthanc image: ``GET /system`` with the account, on the configured port.

The launcher (pacs/orthanc.py) writes the running configuration, port and account included, into
the home; /system needs the account, so a bare port probe would not show that Orthanc answers.
"""

import base64
import json
import sys
import urllib.request
from pathlib import Path

HOME = Path("/srv/neuroscan/orthanc")


def main() -> int:
    port = json.loads((HOME / "orthanc.json").read_text())["HttpPort"]
    account = json.loads((HOME / "credentials.json").read_text())
    token = base64.b64encode(f"{account['username']}:{account['password']}".encode()).decode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/system", headers={"Authorization": f"Basic {token}"})
    with urllib.request.urlopen(request, timeout=4) as response:
        return 0 if response.status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
