"""Where nkplan pins its BPF links (and, on request, their maps) in bpffs, and what the path says.
Pure: no I/O, no ctypes; the planner may compute pin paths and the reader parses them.

Layout (one directory per stack, so `nkplan destroy` and ownership checks see only their own):

    /sys/fs/bpf/nkplan/<stack>/<namespace>/<device>/<hook>/<program>@<digest>         the link
    /sys/fs/bpf/nkplan/<stack>/<namespace>/<device>/<hook>/<program>@<digest>-maps/<map>

- <namespace>: the named network namespace of <device>, or ":host" for the host namespace (a
  spec's namespace names cannot contain ":", so this never collides with a real one).
- <device>: the device whose ifindex the link was created on: for netkit hooks always the
  primary end (both netkit hooks are addressed through it), for tcx hooks the end itself.
- <hook>: primary | peer (netkit), ingress | egress (tcx).
- <program>@<digest>: the ELF program name and the first 16 hex characters of the SHA-256 of the
  object file's content (objfile.digest): the program's identity, independent of its position
  on the hook, so a reorder keeps every pin and a rebuilt object shows up as a different digest
  (plan: update in place, BPF_LINK_UPDATE, then rename the pin).
- <map>: a map of that program (libbpf's name), pinned next to its link when the spec asks, so
  users can read counters (`bpftool map dump pinned PATH`).
- bpffs refuses names containing "." (EPERM), so every component has "%" and "." escaped as
  "%25" and "%2e" (namespace "pod.a" → "pod%2ea"); parse() undoes it.

Which link a pin holds (link id, program id, ifindex, attach type) is asked of the kernel
(OBJ_GET + OBJ_GET_INFO_BY_FD); the reader matches those link ids against PROG_QUERY of the
hook, so position comes from the kernel, identity from the pin name."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from nkplan.core.records import HOST
from nkplan.kernel.bpf import consts as C
from nkplan.spec.objfile import DIGEST_CHARS

BPFFS = "/sys/fs/bpf"
ROOT = f"{BPFFS}/nkplan"
HOST_DIR = ":host"
MAPS_SUFFIX = "-maps"  # not ".maps": bpffs refuses dots in names
TEMP_SUFFIX = "-new"  # a new link's pin before it is renamed into place (never parsed as a link pin)
SEP = "@"  # cannot occur in a C identifier, so the program name splits off unambiguously


def _component(kind: str, value: str) -> str:
    """value as one path component. bpffs refuses every name containing "." (EPERM: reserved by
    the kernel), and namespace, device and stack names may contain dots, so "%" and "." are
    percent-escaped (reversibly: unescape)."""
    if not value or "/" in value or "\0" in value:
        raise ValueError(f"{kind} {value!r} cannot be a bpffs path component")
    return value.replace("%", "%25").replace(".", "%2e")


def escape(value: str) -> str:
    """value as (part of) a path component, "%" and "." escaped (unescape undoes it)."""
    return value.replace("%", "%25").replace(".", "%2e").replace("/", "%2f")


def unescape(component: str) -> str:
    return component.replace("%2e", ".").replace("%2f", "/").replace("%25", "%")


def stack_dir(stack: str, root: str = ROOT) -> str:
    return posixpath.join(root, _component("stack", stack))


def ns_component(namespace: str) -> str:
    return HOST_DIR if namespace == HOST else _component("namespace", namespace)


def ns_of_component(component: str) -> str:
    """The namespace a (raw) namespace component names: ns_component undone."""
    return HOST if component == HOST_DIR else unescape(component)


SHARED_MAPS_DIR = ":maps"  # ':' starts no namespace or device name: never a namespace directory


def shared_maps_dir(stack: str, root: str = ROOT) -> str:
    """The stack's shared maps (`maps:`), one pin each, named as declared."""
    return posixpath.join(stack_dir(stack, root), SHARED_MAPS_DIR)


def shared_map_pin(stack: str, name: str, root: str = ROOT) -> str:
    return posixpath.join(shared_maps_dir(stack, root), _component("map", name))


def device_dir(stack: str, namespace: str, device: str, root: str = ROOT) -> str:
    """Every pin of one device (remove it when the device is deleted)."""
    return posixpath.join(stack_dir(stack, root), ns_component(namespace), _component("device", device))


def hook_dir(stack: str, namespace: str, device: str, hook: str, root: str = ROOT) -> str:
    """Every link pin of one hook."""
    return posixpath.join(device_dir(stack, namespace, device, root), hook)


def pin_name(program: str, digest: str) -> str:
    return f"{_component('program', program)}{SEP}{digest[:DIGEST_CHARS]}"


_HEX = frozenset("0123456789abcdef")


def split_name(name: str) -> tuple[str, str] | None:
    """(program, digest) of a link pin's (raw) name: pin_name undone; None for any other name in
    a hook directory (a maps directory, a temporary pin, a stray file)."""
    program, sep, digest = name.rpartition(SEP)
    if not sep or not program or len(digest) != DIGEST_CHARS or not _HEX.issuperset(digest):
        return None
    return unescape(program), digest


@dataclass(frozen=True)
class LinkPin:
    """One pinned link, as its path describes it."""

    stack: str
    namespace: str  # "" = host
    device: str
    hook: C.Hook
    program: str
    digest: str  # DIGEST_CHARS hex characters
    root: str = ROOT

    def __post_init__(self) -> None:
        _ = self.path  # every component must be valid (ValueError otherwise)

    @property
    def hook_dir(self) -> str:
        return hook_dir(self.stack, self.namespace, self.device, self.hook, self.root)

    @property
    def path(self) -> str:
        return posixpath.join(self.hook_dir, pin_name(self.program, self.digest))

    @property
    def maps_dir(self) -> str:
        return self.path + MAPS_SUFFIX

    def map_path(self, map_name: str) -> str:
        return posixpath.join(self.maps_dir, _component("map", map_name))


def link_pin(
    stack: str, namespace: str, device: str, hook: C.Hook, program: str, digest: str, root: str = ROOT
) -> LinkPin:
    """The pin for `program` of an object with content digest `digest` (full or shortened)."""
    if hook not in C.ATTACH_TYPES:
        raise ValueError(f"unknown hook {hook!r}")
    return LinkPin(stack, namespace, device, hook, program, digest[:DIGEST_CHARS], root)


def parse(path: str, root: str = ROOT) -> LinkPin | None:
    """The LinkPin a path under root names, or None if it is not a link pin of this layout
    (a maps directory, a map, a stray file)."""
    rel = posixpath.relpath(path, root)
    parts = rel.split("/")
    if rel.startswith("..") or len(parts) != 5:
        return None
    stack, ns, device, hook, name = parts
    named = split_name(name)
    if hook not in C.ATTACH_TYPES or named is None:
        return None
    return LinkPin(unescape(stack), ns_of_component(ns), unescape(device), hook, *named, root)
