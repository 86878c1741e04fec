"""Which machine a plan was made on: a saved plan is only valid for the host it read."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def machine_id() -> str:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            value = Path(path).read_text().strip()
        except OSError:
            continue
        if value:
            return value
    return ""


def host_identity() -> dict[str, str]:
    return {"hostname": socket.gethostname(), "machine_id": machine_id(), "kernel": os.uname().release}
