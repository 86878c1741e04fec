"""Plan-time checks that the running kernel can honour the spec. Pure: works on KernelInfo data.
Old kernels silently ignore netkit attributes they do not know, so an explicitly declared
attribute the kernel cannot honour must be an error here, never a no-op or a diff that stays."""

from __future__ import annotations

from collections.abc import Callable

from nkplan.core.records import KernelInfo
from nkplan.spec.models import EndFields, StackSpec

Locate = Callable[[tuple[str | int, ...]], str]


def needs_netkit(spec: StackSpec) -> bool:
    return any(link.kind == "netkit" for link in spec.links)


def declared_sysctls(spec: StackSpec) -> frozenset[str]:
    """Every per-device sysctl key the spec declares on some end: what the read must report."""
    return frozenset(k for link in spec.links for end in (link, link.peer) for k in end.sysctls or {})


def capability_problems(spec: StackSpec, info: KernelInfo, locate: Locate) -> list[str]:
    problems: list[str] = []
    if info.sysctl_keys is not None:
        known = set(info.sysctl_keys)
        for i, link in enumerate(spec.links):
            ends: tuple[tuple[tuple[str | int, ...], EndFields], ...] = (
                (("links", i), link),
                (("links", i, "peer"), link.peer),
            )
            for path, end in ends:
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
        if info.netkit_scrub is False:
            for path, end in ((base, link), ((*base, "peer"), link.peer)):
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
