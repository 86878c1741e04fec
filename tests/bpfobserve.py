"""Independent observers for the BPF tests (host and VM): bpftool's JSON, ping, and the example
objects in bpf/build. bpftool is a separate implementation of the same bpf() queries nkplan
makes, so agreement with it means the kernel holds what nkplan says.

bookworm's bpftool 7.1 knows neither tcx nor netkit (`net show` lists nothing, `link show` says
"type 11"); Debian trixie's 7.5 (tests/vm/trixie-bpftool, from the rig's observer root) shows
both, with hook and order. Map dumps work with either."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nkplan.kernel.bpf.hooks import HookRef
    from nkplan.kernel.bpf.libbpf import BpfObject

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "bpf" / "build"
TRIXIE_BPFTOOL = str(REPO / "tests" / "vm" / "trixie-bpftool")


def obj(name: str) -> str:
    """Path of bpf/build/NAME.o (built by `make -C bpf`; the VM sees the checkout read-only)."""
    path = BUILD / f"{name}.o"
    if not path.exists() and os.environ.get("NKPLAN_IN_VM") != "1":
        subprocess.run(["make", "-s", "-C", str(REPO / "bpf")], check=True)
    assert path.exists(), f"{path} missing: run `make -C bpf` on the host first"
    return str(path)


def have_trixie_bpftool() -> bool:
    return subprocess.run([TRIXIE_BPFTOOL, "version"], capture_output=True).returncode == 0


def build(directory: Path, name: str, source: str) -> str:
    """Compile a BPF C source (it may include bpf/returns.h) to DIRECTORY/NAME.o, as bpf/Makefile does."""
    src, out = directory / f"{name}.c", str(directory / f"{name}.o")
    src.write_text(source)
    clang = ["clang", "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu", f"-I{REPO / 'bpf'}"]
    subprocess.run([*clang, "-c", str(src), "-o", out], check=True)
    return out


def bpftool(*args: str, ns: str | None = None, trixie: bool = False) -> Any:
    tool = TRIXIE_BPFTOOL if trixie else "bpftool"
    cmd = [*(["ip", "netns", "exec", ns] if ns else []), tool, "-j", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)}: {proc.stderr.strip()}"
    return json.loads(proc.stdout or "null")


def hook_progs(kind: str, ns: str | None = None, dev: str | None = None) -> list[tuple[str, int, int]]:
    """(program name, prog id, link id) at one tcx/netkit hook, in run order, per trixie's
    `bpftool net show` (kind: "tcx/ingress", "tcx/egress", "netkit/primary", "netkit/peer")."""
    shown = bpftool("net", "show", ns=ns, trixie=True)
    rows = [r for r in shown[0]["tc"] if r.get("kind") == kind and (dev is None or r["devname"] == dev)]
    return [(r["name"], r["prog_id"], r.get("link_id", 0)) for r in rows]


def link_show(link_id: int, trixie: bool = False) -> dict[str, Any]:
    # the whole list: trixie's bpftool exits 255 after printing `link show id N` of a tcx link
    found = [link for link in bpftool("link", "show", trixie=trixie) if link["id"] == link_id]
    assert found, f"bpftool link show: no link {link_id}"
    return found[0]  # type: ignore[no-any-return]


def map_value(map_id: int) -> Any:
    """Key 0's value as bpftool decodes it with the map's BTF (e.g. {"packets": 3, "bytes": 294})."""
    dump = bpftool("map", "dump", "id", str(map_id))
    return dump[0]["formatted"]["value"]


def allow_entries(map_id: int) -> list[tuple[int, list[int], int]]:
    """bpf/allow.c's allow list: (prefixlen, addr bytes, port) of every entry, as bpftool decodes
    them with BTF, sorted."""
    out: list[tuple[int, list[int], int]] = []
    for e in bpftool("map", "dump", "id", str(map_id)):
        f: dict[str, Any] = e["formatted"]
        out.append((f["key"]["prefixlen"], f["key"]["addr"], f["value"]["port"]))
    return sorted(out)


def pinned_value(path: str) -> Any:
    """Key 0's value of the map pinned at path, as bpftool decodes it (see map_value)."""
    return bpftool("map", "dump", "pinned", path)[0]["formatted"]["value"]


def pinned_map_id(path: str) -> int:
    """The id of the map pinned at path, as bpftool sees it."""
    return int(bpftool("map", "show", "pinned", path)["id"])


def counters(raw: bytes) -> tuple[int, int]:
    """count.c's struct counters {packets, bytes}."""
    packets, nbytes = struct.unpack("=QQ", raw[:16])
    return packets, nbytes


def ping(dst: str, ns: str | None = None, count: int = 3, interval: str = "0.2", wait: int = 1) -> tuple[int, int]:
    """(transmitted, received) of `ping -c COUNT -i INTERVAL -W WAIT DST`, run in ns."""
    cmd = [*(["ip", "netns", "exec", ns] if ns else []), "ping", "-n", "-q", "-c", str(count), "-i", interval]
    proc = subprocess.run([*cmd, "-W", str(wait), dst], capture_output=True, text=True)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", proc.stdout)
    assert m, f"ping {dst}: {proc.stdout}{proc.stderr}"
    return int(m.group(1)), int(m.group(2))


@dataclass
class Attachments:
    """What a test loaded and attached by hand (a test fixture closes and detaches them)."""

    objects: list[BpfObject] = field(default_factory=list, kw_only=True)
    fds: list[int] = field(default_factory=list, kw_only=True)

    def load(self, name: str, program: str) -> BpfObject:
        from nkplan.kernel.bpf import libbpf

        o = libbpf.load_program(obj(name), program)
        self.objects.append(o)
        return o

    def attach_at(self, ref: HookRef, o: BpfObject, program: str, **kw: Any) -> int:
        from nkplan.kernel.bpf import hooks

        fd = hooks.attach(ref, o.program_fd(program), program=program, **kw)
        self.fds.append(fd)
        return fd
