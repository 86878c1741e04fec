"""bpffs: make sure it is mounted at /sys/fs/bpf, and create, open, list and remove nkplan's pins
(layout: pins.py). A bpf_link or map lives as long as an fd or a pin holds it, so pins are what
keep nkplan's programs attached after the process exits."""

from __future__ import annotations

import errno
import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass

from nkplan.errors import CapabilityError, KernelError
from nkplan.kernel import faultpoint, libc
from nkplan.kernel.bpf import consts as C
from nkplan.kernel.bpf import pins
from nkplan.kernel.bpf import syscall as S
from nkplan.kernel.bpf.pins import LinkPin
from nkplan.kernel.bpf.refusals import explain


def mounted(path: str = pins.BPFFS) -> bool:
    """Is a bpffs mounted exactly at path (as this process's mount namespace sees it)?"""
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fields = left.split()
            if len(fields) > 4 and fields[4] == path and right.split()[:1] == ["bpf"]:
                return True
    return False


_seen: set[str] = set()  # paths this process found (or made) a bpffs mounted at


def ensure_mounted(path: str = pins.BPFFS) -> bool:
    """Mount a bpffs at path unless one is there (as systemd does at boot); True if it mounted one.
    Asked once per process: mountinfo lists every named namespace's bind mount too, so reading
    it before every pin was a tenth of an apply's time per BPF hook with 1000 pods (a bpffs
    unmounted meanwhile makes the next pin fail in words anyway)."""
    if path in _seen:
        return False
    if mounted(path):
        _seen.add(path)
        return False
    if not os.path.isdir(path):
        raise CapabilityError(f"cannot pin BPF links: {path} does not exist (a kernel without bpffs?)")
    try:
        libc.mount("bpf", path, "bpf", 0, "mode=0700")
    except OSError as exc:
        err = exc.errno or 0
        if err in (errno.EPERM, errno.EACCES):
            raise CapabilityError(f"mounting bpffs at {path} needs root (CAP_SYS_ADMIN)") from None
        if err == errno.ENODEV:
            raise CapabilityError(f"cannot pin BPF links: this kernel has no bpffs (mounting {path}: ENODEV)") from None
        raise KernelError(f"mounting bpffs at {path}: {os.strerror(err)}", err) from None
    _seen.add(path)
    return True


def pin(fd: int, path: str) -> None:
    """Pin the object behind fd at path, creating missing directories (bpffs mounted first)."""
    ensure_mounted()
    try:
        os.makedirs(posixpath.dirname(path), mode=0o700, exist_ok=True)
        S.obj_pin(fd, path)
    except OSError as exc:
        raise explain("pin", f"pinning at {path}", exc) from None


def open_pin(path: str) -> int | None:
    """A new fd for what is pinned at path (close it), or None if nothing is pinned there."""
    try:
        return S.obj_get(path)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise explain("get", f"opening the pin {path}", exc) from None


def _prune(directory: str, stop: str) -> None:
    """Remove directory and its parents while they are empty, up to (excluding) stop."""
    stop = posixpath.normpath(stop)
    while posixpath.normpath(directory).startswith(stop + "/"):
        try:
            os.rmdir(directory)
        except OSError:
            return
        directory = posixpath.dirname(directory)


def prune(directory: str, root: str = pins.ROOT) -> None:
    """Remove directory and its parents while they are empty, up to (excluding) root."""
    _prune(directory, root)


def unpin(path: str, root: str = pins.ROOT) -> bool:
    """Remove one pin (and its maps directory, if any; and directories left empty below root).
    What it held goes once no fd holds it either: for a link, that detaches its program, in the
    kernel's deferred work a moment later (hooks.remove_pinned_link detaches at once).
    True if there was something to remove."""
    removed = False
    for target in (path + pins.MAPS_SUFFIX, path):
        if os.path.isdir(target):
            remove_tree(target, root)
            removed = True
        else:
            try:
                if os.path.lexists(target):
                    faultpoint.reached(f"unlink({target})")
                os.unlink(target)
                removed = True
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise KernelError(f"removing the pin {target}: {os.strerror(exc.errno or 0)}", exc.errno) from None
    _prune(posixpath.dirname(path), root)
    return removed


def remove_tree(directory: str, root: str = pins.ROOT) -> None:
    """Remove a directory of pins (e.g. a deleted device's device_dir) and empty parents below root."""
    if not os.path.isdir(directory):
        return
    try:
        faultpoint.reached(f"remove_tree({directory})")
        for base, dirs, files in os.walk(directory, topdown=False):
            for name in files:
                os.unlink(posixpath.join(base, name))
            for name in dirs:
                os.rmdir(posixpath.join(base, name))
        os.rmdir(directory)
    except OSError as exc:
        raise KernelError(f"removing the pins under {directory}: {os.strerror(exc.errno or 0)}", exc.errno) from None
    _prune(posixpath.dirname(directory), root)


# listing: the one walk of the pin tree (reading never mounts anything: an absent bpffs or
# directory lists as nothing) ------------------------------------------------------------------
_Entry = tuple[str, bool, bool]  # (name, a directory (following a symlink), a symlink)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # as os.walk takes it
        return False


class Listing:
    """One read's listings of pin-tree directories: each directory is read once (one scandir) and
    serves the hook walk (hook_dirs), each hook directory's names (names) and the orphan walk
    (walk); with 1000 hooks these were three and four listings of every hook directory."""

    def __init__(self) -> None:
        self._seen: dict[str, list[_Entry] | OSError] = {}

    def _entries(self, path: str) -> list[_Entry] | OSError:
        got = self._seen.get(path)
        if got is None:
            try:
                with os.scandir(path) as it:
                    got = [(e.name, _is_dir(e), e.is_symlink()) for e in it]
            except OSError as exc:
                got = exc
            self._seen[path] = got
        return got

    def _listed(self, path: str) -> list[_Entry]:
        got = self._entries(path)
        if isinstance(got, (FileNotFoundError, NotADirectoryError)):
            return []
        if isinstance(got, OSError):
            raise got
        return got

    def subdirs(self, path: str) -> list[str]:
        """The directories in path (not symlinks), sorted; nothing if it is absent."""
        return sorted(name for name, is_dir, link in self._listed(path) if is_dir and not link)

    def names(self, path: str) -> list[str]:
        """What path holds, sorted (as os.listdir sorted); nothing if it is absent."""
        return sorted(name for name, _d, _l in self._listed(path))

    def walk(self, top: str) -> Iterator[tuple[str, list[str], list[str]]]:
        """os.walk(top) (top-down; the caller may prune dirs in place) over these listings."""
        got = self._entries(top)
        if isinstance(got, OSError):
            return  # os.walk ignores a directory it cannot list
        dirs = [name for name, is_dir, _l in got if is_dir]
        files = [name for name, is_dir, _l in got if not is_dir]
        links = {name for name, _d, link in got if link}
        yield top, dirs, files
        for name in dirs:
            if name not in links:  # os.walk does not follow symlinks
                yield from self.walk(posixpath.join(top, name))


def stacks(root: str = pins.ROOT) -> list[str]:
    """The stacks that have a pin directory (sorted by directory name)."""
    return [pins.unescape(d) for d in Listing().subdirs(root)]


HookKey = tuple[str, str, str, C.Hook]  # (stack, namespace, device, hook)


def hook_dirs(
    root: str = pins.ROOT, stack: str | None = None, listing: Listing | None = None
) -> Iterator[tuple[HookKey, str]]:
    """Every hook directory of the pin tree (of one stack, if given), sorted, with what its path
    says: ((stack, namespace, device, hook), directory). One scandir per directory (of listing's,
    if given)."""
    subdirs = (listing or Listing()).subdirs
    tops = subdirs(root) if stack is None else [posixpath.basename(pins.stack_dir(stack, root))]
    for st in tops:
        for nsc in subdirs(f"{root}/{st}"):
            for devc in subdirs(f"{root}/{st}/{nsc}"):
                for hook in subdirs(f"{root}/{st}/{nsc}/{devc}"):
                    if hook in C.ATTACH_TYPES:
                        key = (pins.unescape(st), pins.ns_of_component(nsc), pins.unescape(devc), hook)
                        yield key, f"{root}/{st}/{nsc}/{devc}/{hook}"


@dataclass(frozen=True, slots=True)
class PinEntry:
    """A link pin as its name describes it (nothing opened)."""

    program: str
    digest: str
    path: str
    maps: bool  # a maps directory sits next to it


def names(directory: str) -> list[str]:
    """What a directory holds, sorted by name (nothing if it is absent). A read lists each hook
    directory once and hands the names to hook_pins, temp_pins and hookmarks.read."""
    try:
        return sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []


def hook_pins(directory: str, listed: list[str] | None = None) -> list[PinEntry]:
    """The link pins of one hook directory, sorted by name (listed: its names(), if known)."""
    names_ = names(directory) if listed is None else listed
    maps = {n[: -len(pins.MAPS_SUFFIX)] for n in names_ if n.endswith(pins.MAPS_SUFFIX)}
    out = []
    for name in names_:
        named = pins.split_name(name)
        if named is not None:
            out.append(PinEntry(*named, f"{directory}/{name}", name in maps))
    return out


def temp_pins(directory: str, listed: list[str] | None = None) -> list[str]:
    """The temporary pins (pins.TEMP_SUFFIX) in one hook directory, sorted by name: what an apply
    killed between pinning a new link and renaming the pin into place left behind (listed: its
    names(), if known)."""
    found = names(directory) if listed is None else listed
    return [f"{directory}/{n}" for n in found if n.endswith(pins.TEMP_SUFFIX)]


def link_pins(stack: str, root: str = pins.ROOT) -> list[LinkPin]:
    """Every link pin under the stack's directory, sorted by path."""
    found = [
        LinkPin(*key, entry.program, entry.digest, root) for key, d in hook_dirs(root, stack) for entry in hook_pins(d)
    ]
    return sorted(found, key=lambda p: p.path)


def pin_maps(link: LinkPin, map_fds: dict[str, int]) -> dict[str, str]:
    """Pin the given maps next to the link pin; {map name: pin path}."""
    paths = {}
    for name, fd in sorted(map_fds.items()):
        if name.startswith(".") or "." in name:
            continue  # libbpf's internal maps (<obj>.rodata, .bss): not the program's counters
        paths[name] = link.map_path(name)
        pin(fd, paths[name])
    return paths
