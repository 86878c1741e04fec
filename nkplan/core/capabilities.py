"""Plan-time checks that the running kernel can honour the spec. Pure: works on KernelInfo data.
Old kernels silently ignore netkit attributes they do not know, so an explicitly declared
attribute the kernel cannot honour must be an error here, never a no-op or a diff that stays."""

from __future__ import annotations

from collections.abc import Callable

from nkplan.core.records import HOST, KernelInfo, LiveState
from nkplan.core.sysctls import net_key_device, reference_key
from nkplan.spec.checks import link_ends, namespace_sysctls
from nkplan.spec.models import StackSpec

Locate = Callable[[tuple[str | int, ...]], str]


def needs_netkit(spec: StackSpec) -> bool:
    return any(link.kind == "netkit" for link in spec.links)


def declared_sysctls(spec: StackSpec) -> frozenset[str]:
    """Every per-device sysctl key the spec declares on some end: what the read must report."""
    return frozenset(k for link in spec.links for end, _ in link_ends(link, ()) for k in end.sysctls or {})


def declared_net_keys(spec: StackSpec) -> dict[str, frozenset[str]]:
    """The net.* keys each namespace (HOST: the host) declares: what the read must report."""
    out: dict[str, frozenset[str]] = {}
    for _path, ns, declared in namespace_sysctls(spec):
        out[ns] = frozenset(declared)
    return out


def net_key_problems(spec: StackSpec, live: LiveState, locate: Locate) -> list[str]:
    """A declared net.* key that the namespace (or, for a namespace still to be made, the host)
    does not have, or that cannot be read back (write-only): a plan error at its position."""
    problems: list[str] = []
    host_has = set(live.kernel.host_net_keys or ())
    for path, ns, declared in namespace_sysctls(spec):
        have = live.sysctls.get(ns)
        known = {k for k, _ in have.values} if have is not None else set()
        for key in declared:
            if key in known:
                continue
            # a namespace that exists lacks it, unless it is about a device still to come; a new
            # namespace (or that device) will have what the host has (its `default`, for a device)
            later = have is None or net_key_device(key) is not None
            if not later or reference_key(key) not in host_has:
                where = "the host namespace" if ns == HOST else f"namespace {ns!r}"
                problems.append(
                    f"{locate((*path, key))}: {where} on this kernel ({live.kernel.release}) has no readable "
                    f"sysctl {key} (no such key, or a write-only one)"
                )
    return problems


SNAPSHOT_HINT = "take the snapshot with the spec (`nkplan show SPEC --format json`; Ansible: state: gathered with src)"


def snapshot_sysctl_problems(spec: StackSpec, live: LiveState, locate: Locate) -> list[str]:
    """A snapshot holds the sysctl values of the keys the spec given to `show` declared, no
    others. A declared key it has no value of, on a namespace or device end that the snapshot
    holds, is unknown, not absent: planning it would show a false change (and the saved plan
    would be refused on the host as stale), so it is a plan error saying how to snapshot."""
    problems: list[str] = []
    for path, ns, declared in namespace_sysctls(spec):
        if ns != HOST and ns not in live.namespaces:
            continue  # a namespace still to be made: its values are the plan's to set
        have = live.sysctls.get(ns)
        known = {k for k, _ in have.values} if have is not None else set()
        for key in sorted(set(declared) - known):
            where = "the host" if ns == HOST else f"namespace {ns!r}"
            unknown = f"the snapshot holds no value of {key} for {where}"
            problems.append(f"{locate((*path, key))}: {unknown}; {SNAPSHOT_HINT}")
    for i, link in enumerate(spec.links):
        held = live.links.get((link.namespace or HOST, link.name))
        if held is None:
            continue
        for end, base in link_ends(link, ("links", i)):
            ns = end.namespace or HOST
            live_end = next((e for e in held.ends if e.name == end.name and e.namespace == ns), None)
            if live_end is None:
                continue
            known = {k for k, _ in live_end.sysctls}
            for key in sorted(set(end.sysctls or {}) - known):
                problems.append(
                    f"{locate((*base, 'sysctls', key))}: the snapshot holds no value of {key} for device "
                    f"{end.name!r}; {SNAPSHOT_HINT}"
                )
    return problems


def capability_problems(spec: StackSpec, info: KernelInfo, locate: Locate) -> list[str]:
    problems: list[str] = []
    if info.sysctl_keys is not None:
        known = set(info.sysctl_keys)
        for i, link in enumerate(spec.links):
            for end, path in link_ends(link, ("links", i)):
                for key in end.sysctls or {}:
                    if key not in known:
                        problems.append(
                            f"{locate((*path, 'sysctls', key))}: this kernel ({info.release}) has no "
                            f"net.{key.replace('.', '.conf.DEV.', 1)}"
                        )
    for i, link in enumerate(spec.links):
        if link.kind != "netkit":
            continue
        base: tuple[str | int, ...] = ("links", i)
        if info.netkit is False:
            problems.append(
                f"{locate((*base, 'kind'))}: this kernel ({info.release}) has no netkit support "
                "(CONFIG_NETKIT); netkit needs Linux 6.7 or newer built with CONFIG_NETKIT=y"
            )
            continue
        if link.pairing == "single" and info.netkit_single is False:
            # such a kernel ignores IFLA_NETKIT_PAIRING and would make a pair (its peer named
            # by the kernel) instead: refused here, never created
            problems.append(
                f"{locate((*base, 'pairing'))}: pairing: single (a netkit device without a peer) needs "
                f"Linux 7.1 or newer; this kernel ({info.release}) would silently create a pair instead"
            )
        if info.netkit_scrub is False:
            for end, path in link_ends(link, base):
                if end.scrub is not None:
                    problems.append(
                        f"{locate((*path, 'scrub'))}: scrub: {end.scrub} needs Linux 6.12.4/6.13 or newer; "
                        f"this kernel ({info.release}) would silently ignore it"
                    )
        if info.netkit_headroom is False:
            for fld in ("headroom", "tailroom"):
                if getattr(link, fld) is not None:
                    problems.append(
                        f"{locate((*base, fld))}: {fld}: {getattr(link, fld)} needs Linux 6.14 or newer; "
                        f"this kernel ({info.release}) would silently ignore it"
                    )
    return problems
