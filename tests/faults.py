"""Fault injection for the real-kernel tests (issue 14): a Kernel that wraps the real one and
fails (or kills its own process at) the k-th operation, and an independent view of what the
kernel holds to compare before and after.

Two levels are counted. A *step* is one write call the applier sends through the Kernel
protocol (create / update / delete / delete_many); an *operation* is one low-level change the
kernel layer makes while carrying out a step (a netlink request, a bpf() attach/pin/update/detach,
a bpffs removal or rename, a namespace mount), seen through nkplan/kernel/faultpoint.py. A
failure is injected at operation k as the kernel would refuse it: OSError(EIO), which the
kernel layer turns into the KernelError a real refusal gives. Operations after the injected one
are the rollback's, so `fail_rollback=j` fails the j-th of those too.

The view (`snapshot`) is read with iproute2 (`ip -d -j`: devices with their attributes,
addresses, routes, rules, in the host and in every namespace of the test) and Debian trixie's
bpftool (`net show`: what runs at each tcx/netkit hook, by program id), plus the listing of the
stack's bpffs pin tree. Never through nkplan's own reader."""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nkplan.kernel import faultpoint
from nkplan.kernel.seam import ApplySession, Kernel
from tests import bpfobserve as obs
from tests.host import observe

BPFFS_ROOT = Path("/sys/fs/bpf/nkplan")


@dataclass
class Faults:
    """What to inject (0: nothing). Numbers count from 1."""

    fail_op: int = 0  # the k-th low-level operation fails
    fail_rollback: int = 0  # ... and the j-th operation after it (the rollback's) fails too
    kill_step: int = 0  # SIGKILL this process just before the k-th step
    kill_op: int = 0  # SIGKILL this process just before the k-th low-level operation
    steps: list[str] = field(default_factory=list)  # what was reached, in order
    ops: list[str] = field(default_factory=list)
    injected: list[str] = field(default_factory=list)


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class FaultKernel:
    """The Kernel protocol around another kernel: every write step is counted (and the low-level
    operations inside it, through faultpoint); reads and everything else pass through."""

    def __init__(self, inner: Kernel, faults: Faults | None = None) -> None:
        self.inner = inner
        self.faults = faults if faults is not None else Faults()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _op(self, what: str) -> None:
        f = self.faults
        f.ops.append(what)
        n = len(f.ops)
        if n == f.kill_op:
            _kill()
        if n == f.fail_op or (f.fail_op and f.fail_rollback and n == f.fail_op + f.fail_rollback):
            f.injected.append(f"{n}: {what}")
            raise OSError(errno.EIO, f"injected fault at operation {n} ({what})")

    def _step(self, what: str, run: Callable[[], None]) -> None:
        self.faults.steps.append(what)
        if len(self.faults.steps) == self.faults.kill_step:
            _kill()
        previous = faultpoint.install(self._op)
        try:
            run()
        finally:
            faultpoint.install(previous)

    def create(self, rec: object, session: ApplySession | None = None) -> None:
        self._step(f"create {rec!r:.80}", lambda: self.inner.create(rec, session))

    def update(self, before: object, after: object, session: ApplySession | None = None) -> None:
        self._step(f"update {after!r:.80}", lambda: self.inner.update(before, after, session))

    def delete(self, rec: object, session: ApplySession | None = None) -> None:
        self._step(f"delete {rec!r:.80}", lambda: self.inner.delete(rec, session))

    def delete_many(self, recs: Sequence[object], session: ApplySession | None = None) -> None:
        self._step(f"delete {len(recs)}", lambda: self.inner.delete_many(recs, session))


# the independent view ----------------------------------------------------------------------------
_VOLATILE = {
    "stats64",
    "stats",
    "valid_life_time",
    "preferred_life_time",
    "operstate",  # follows carrier on its own schedule
    "ifindex",  # a device made again (a rollback of its delete) gets a new index
    "link_index",
    "link_id",  # a program put back on its hook is attached by a new link
    "link_netnsid",
    "tentative",  # IPv6 duplicate address detection still running
}


# what a device made again gets anew where the spec does not say: its MAC (compared only
# between snapshots taken with ids=False)
_MADE_AGAIN = frozenset({"prog_id", "id", "map_ids", "address", "permaddr"})


def _link_local(entry: dict[str, Any]) -> bool:
    if "dst" in entry:  # a route; those of the local table follow from the addresses (compared)
        return str(entry["dst"]).startswith(("fe80:", "ff00:")) or entry.get("table") == "local"
    return entry.get("scope") == "link" and entry.get("family") == "inet6"


def _clean(obj: Any, drop: frozenset[str] = frozenset()) -> Any:
    if isinstance(obj, dict):
        out = {k: _clean(v, drop) for k, v in obj.items() if k not in _VOLATILE and k not in drop}
        if isinstance(out.get("flags"), list):  # carrier comes and goes on its own schedule (as operstate)
            out["flags"] = [f for f in out["flags"] if f not in ("NO-CARRIER", "LOWER_UP")]
        return out
    if isinstance(obj, list):
        # IPv6 link-local addresses and their routes come with every device (their local route only
        # once duplicate address detection is over): the devices themselves are compared
        obj = [v for v in obj if not (isinstance(v, dict) and _link_local(v))]
        return [_clean(v, drop) for v in obj]
    return obj


def _netns(prefix: str) -> list[str]:
    return sorted(n for n in observe.netns_names() if n.startswith(prefix))


def _hooks(ns: str | None, keep: Callable[[str], bool]) -> list[Any]:
    shown = obs.bpftool("net", "show", ns=ns, trixie=True)
    return [r for r in shown[0]["tc"] if keep(str(r.get("devname", "")))]


def _pins(stack: str) -> list[str]:
    top = BPFFS_ROOT / stack
    return sorted(str(p.relative_to(top)) for p in top.rglob("*")) if top.exists() else []


def snapshot(prefix: str, stack: str, *, ids: bool = True) -> dict[str, Any]:
    """What the kernel holds of the test's objects: namespaces named PREFIX*, host devices named
    PREFIX* (with their addresses and routes), everything inside those namespaces, the programs at
    their hooks, the stack's pin tree. ids=False also leaves out program and map ids (a re-apply
    loads new instances)."""
    drop = frozenset() if ids else _MADE_AGAIN

    def ours(name: str) -> bool:
        return name.startswith(prefix)

    view: dict[str, Any] = {"netns": _netns(prefix), "pins": _pins(stack)}
    view["host"] = {
        "links": [d for d in observe.ip_json("-d", "link", "show") if ours(d.get("ifname", ""))],
        "addrs": [a for a in observe.ip_json("addr", "show") if ours(a.get("ifname", ""))],
        "routes": [r for r in observe.ip_json("route", "show", "table", "all") if ours(str(r.get("dev", "")))]
        + [r for r in observe.ip_json("-6", "route", "show", "table", "all") if ours(str(r.get("dev", "")))],
        "hooks": _hooks(None, ours),
    }
    for ns in view["netns"]:
        view[ns] = {
            "links": observe.ip_json("-d", "link", "show", ns=ns),
            "addrs": observe.ip_json("addr", "show", ns=ns),
            "routes": observe.ip_json("route", "show", "table", "all", ns=ns)
            + observe.ip_json("-6", "route", "show", "table", "all", ns=ns),
            "rules": observe.ip_json("rule", "show", ns=ns),
            "hooks": _hooks(ns, lambda _n: True),
        }
    return _clean(view, drop)  # type: ignore[no-any-return]


def _row_name(row: dict[str, Any]) -> str:
    return str(row.get("ifname") or row.get("dst") or f"{row.get('devname')} {row.get('kind')} {row.get('name')}")


def difference(a: Any, b: Any, where: str = "", out: list[str] | None = None) -> str:
    """Where two snapshots differ, one line per differing leaf (for assertion messages)."""
    lines: list[str] = [] if out is None else out
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() | b.keys(), key=str):
            difference(a.get(key), b.get(key), f"{where}.{key}", lines)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            name = _row_name(x) if isinstance(x, dict) else i
            difference(x, y, f"{where}[{name}]", lines)
    elif isinstance(a, list) and isinstance(b, list):
        lines.append(f"{where}: only before: {[x for x in a if x not in b]!r:.500}")
        lines.append(f"{where}: only after: {[x for x in b if x not in a]!r:.500}")
    elif a != b:
        lines.append(f"{where}: {a!r:.400} != {b!r:.400}")
    return "\n".join(lines[:20])


def leftover_temp_pins(stack: str) -> list[str]:
    return [p for p in _pins(stack) if p.endswith("-new")]
