"""set_programs on the running kernel: make one hook run exactly the declared programs, in order,
leaving programs others attached where they are. Pins and ownership: scan.py.

Three phases, so a refusal leaves the hook as it was:
  0. load every program that is needed (verifier errors before any change);
  1. attach the new links in declared order, each anchored to an owned neighbour: after the
     previous declared program; the first declared one before the first link nkplan owns at the
     hook, or, if it owns none there, last (after whatever others attached, so their programs
     keep seeing every packet as before). expected_revision is chained from one fresh
     PROG_QUERY (each of our attaches bumps it by one), so a concurrent change makes the kernel
     say ESTALE (StaleHookError: "the hook changed concurrently"). On any failure the links
     attached so far are detached again: nothing stays half-done;
  2. commit: pin the new links (at a temporary name, then rename(2) over the final one, so a
     moved program's pin is never missing and a crash leaves no doubt), detach the old instances
     of moved programs, swap changed programs in place (BPF_LINK_UPDATE with the old program as
     the expected one, then rename the pin to the new digest), detach and unpin the ones no
     longer declared. Maps are pinned next to a link (<pin>-maps/) when pin_maps asks. A new
     instance of a program already at the hook (swapped in place or moved) is loaded with the old
     instance's compatible maps (libbpf.BpfObject.reuse_maps), so its counters and state go on.
Reorders keep the largest set of programs already in declared relative order where they are and
re-attach only the others (a new instance at its place first, then the old one detached: a moved
program runs twice for a moment but is never missing).

The hook is read afresh; the caller's `before` only contributes its owner (for adoption). So a
repeated or interrupted call converges. Programs an apply took off a hook are kept (by name and
digest, in the apply's session: Retired) so the applier's rollback, set_programs(after, before)
with `before` read from the kernel (no object file), puts back the very same programs, maps and
counters included."""

from __future__ import annotations

import errno
import os
import posixpath
import resource
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

from nkplan.core.records import HookRec, ProgramRec
from nkplan.errors import InternalError, KernelError
from nkplan.kernel import faultpoint
from nkplan.kernel.bpf import bpffs, hookmarks, hooks, info, libbpf, pins, sharedmaps, values
from nkplan.kernel.bpf import consts as C
from nkplan.kernel.bpf.errors import BpfObjectError, StaleHookError
from nkplan.kernel.bpf.hooks import HookRef
from nkplan.kernel.bpf.libbpf import BpfObject
from nkplan.kernel.bpf.mprog import Anchor, HookState
from nkplan.kernel.bpf.pins import MAPS_SUFFIX, TEMP_SUFFIX, LinkPin, hook_dir
from nkplan.kernel.bpf.scan import Pinned, pinned_links
from nkplan.spec import objfile


@dataclass
class _Owned:
    pin: LinkPin
    fd: int
    link_id: int
    prog_id: int


@dataclass
class _Prog:
    """A loaded program ready to attach: freshly loaded from its object file (obj), or one this
    process took off a hook earlier (fd of its own)."""

    fd: int
    obj: BpfObject | None = None


@dataclass
class _Attach:
    rec: ProgramRec
    prog: _Prog
    replaces: _Owned | None = None  # the old instance of a moved program
    fd: int | None = None
    link_id: int = 0


def _longest_in_order(positions: list[int], weights: list[int] | None = None) -> set[int]:
    """Indexes into positions of a strictly increasing subsequence of greatest total weight
    (default: longest). n <= 63, so O(n^2) is plenty."""
    n = len(positions)
    if n == 0:
        return set()
    w = weights or [1] * n
    best, prev = list(w), [-1] * n
    for i in range(n):
        for j in range(i):
            if positions[j] < positions[i] and best[j] + w[i] > best[i]:
                best[i], prev[i] = best[j] + w[i], j
    i = max(range(n), key=lambda k: (best[k], -k))
    keep = set()
    while i >= 0:
        keep.add(i)
        i = prev[i]
    return keep


def _rename(src: str, dst: str) -> None:
    try:
        os.makedirs(posixpath.dirname(dst), mode=0o700, exist_ok=True)
        faultpoint.reached(f"rename({src})")
        os.rename(src, dst)
    except OSError as exc:
        raise KernelError(f"renaming the pin {src} to {dst}: {os.strerror(exc.errno or 0)}", exc.errno) from None


def _check_digest(rec: ProgramRec) -> None:
    if not rec.object:
        raise InternalError(f"program {rec.program}: no object file to load it from")
    why = objfile.problem(rec.object)
    if why is not None:
        raise BpfObjectError(f"{rec.object}: {why}", rec.object, rec.program)
    now = objfile.digest(rec.object)[: objfile.DIGEST_CHARS]
    planned = (rec.object_digest or rec.digest)[: objfile.DIGEST_CHARS]  # object_digest: the instance has globals
    if now != planned:
        raise BpfObjectError(
            f"{rec.object}: the object file changed since the plan was made (digest {now}, planned "
            f"{planned}); plan again",
            rec.object,
            rec.program,
        )


def _open_prog_maps(prog_fd: int, cleanup: ExitStack) -> list[tuple[str, int]]:
    """(kernel map name, fd) of each map a loaded program uses, found through the kernel's map
    ids; the fds close with `cleanup`."""
    out = []
    for map_id in info.prog_info(prog_fd).map_ids:
        fd = info.open_map(map_id)
        cleanup.callback(os.close, fd)
        out.append((info.map_info(fd).name, fd))
    return out


def _pin_prog_maps(pin: LinkPin, prog_fd: int) -> None:
    """Pin the maps of a loaded program next to its link pin."""
    with ExitStack() as stack:
        bpffs.pin_maps(pin, dict(_open_prog_maps(prog_fd, stack)))


def _pin_maps(pin: LinkPin, prog: _Prog) -> None:
    if prog.obj is not None:
        bpffs.pin_maps(pin, prog.obj.map_fds())
    else:
        _pin_prog_maps(pin, prog.fd)


class Retired:
    """Programs one apply took off hooks (detached, or swapped out by LINK_UPDATE), by hook and
    (program, digest): the applier's rollback calls set_programs(after, before), whose `before`
    came from the kernel and names no object file; these are what it puts back, each to its own
    hook (with its maps, so counters survive a rollback). Kept in the apply's ApplySession
    (kernel/seam.py), which closes the fds when the apply is over. Bounded."""

    MAX = 8192

    def __init__(self) -> None:
        self.fds: dict[tuple[str, str, str, str, str], int] = {}

    @staticmethod
    def key(ref: HookRef, program: str, digest: str) -> tuple[str, str, str, str, str]:
        return (ref.namespace, ref.device, ref.hook, program, digest[: objfile.DIGEST_CHARS])

    def retire(self, ref: HookRef, program: str, digest: str, prog_id: int) -> None:
        """Keep the program of a link about to be detached (call it while the link still holds it)."""
        _room_for_fds(len(self.fds) + 64)
        try:
            fd = info.open_prog(prog_id)
        except KernelError:
            return
        self.retire_fd(ref, program, digest, fd)

    def retire_fd(self, ref: HookRef, program: str, digest: str, fd: int) -> None:
        key = self.key(ref, program, digest)
        old = self.fds.pop(key, None)
        if old is not None:
            os.close(old)
        self.fds[key] = fd
        while len(self.fds) > self.MAX:
            os.close(self.fds.pop(next(iter(self.fds))))

    def has(self, ref: HookRef, program: str, digest: str) -> bool:
        return self.key(ref, program, digest) in self.fds

    def take(self, ref: HookRef, program: str, digest: str) -> int | None:
        """The retired program's fd, now the caller's to close."""
        return self.fds.pop(self.key(ref, program, digest), None)

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


def _room_for_fds(needed: int) -> None:
    """Raise the soft open-files limit (often 1024) towards the hard one when the retired
    programs would need more: running out of fds mid-apply would break its rollback."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        top = want * 2 if hard == resource.RLIM_INFINITY else min(hard, want * 2)
        if top > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))


class _HookWriter:
    def __init__(self, ref: HookRef, owner: str, stacks: Sequence[str], cleanup: ExitStack, retired: Retired) -> None:
        self.ref, self.owner, self.stacks, self.cleanup = ref, owner, stacks, cleanup
        self.retired = retired
        self._shared_ids: dict[int, str] | None = None
        # the shared maps each program used when the plan was made: a map no longer declared is
        # unpinned before the hooks change (deletes go first), so the pins cannot tell it any more
        self.was_shared: dict[str, tuple[str, ...]] = {}
        self.applied: str | None = None  # the digest for the hook's marker (after.applied)

    def shared_ids(self) -> dict[int, str]:
        """{map id: name} of the owner stack's pinned shared maps (read once)."""
        if self._shared_ids is None:
            self._shared_ids = sharedmaps.pinned_ids(self.owner)
        return self._shared_ids

    def shared_of(self, o: _Owned) -> tuple[str, ...]:
        """The shared maps the program of an owned link uses, or used when the plan was made."""
        return tuple(sorted(set(self.uses_shared(o.prog_id)) | set(self.was_shared.get(o.pin.program, ()))))

    def uses_shared(self, prog_id: int) -> tuple[str, ...]:
        """The owner's shared maps a loaded program holds, sorted by name."""
        ids = self.shared_ids()
        if not ids:
            return ()
        fd = info.open_prog(prog_id)
        try:
            return tuple(sorted(ids[i] for i in info.prog_info(fd).map_ids if i in ids))
        finally:
            os.close(fd)

    def what(self, program: str) -> str:
        return f"{program} at {self.ref.words()}"

    def final_pin(self, rec: ProgramRec) -> LinkPin:
        r = self.ref
        return pins.link_pin(self.owner, r.namespace, r.device, r.hook, rec.program, rec.digest)

    def remove_hook_dirs(self) -> None:
        for stack in self.stacks:
            bpffs.remove_tree(hook_dir(stack, self.ref.namespace, self.ref.device, self.ref.hook))

    def owned(self, state: HookState) -> tuple[list[_Owned], list[Pinned]]:
        """Owned links in kernel order, and the pins to drop: stale ones (their link is not on
        this hook) and second pins of a link already pinned under another name."""
        position = {e.link_id: i for i, e in enumerate(state.entries) if e.link_id is not None}
        found: list[tuple[int, _Owned]] = []
        drop: list[Pinned] = []
        r = self.ref
        for stack in self.stacks:
            for p in pinned_links(stack, r.namespace, r.device, r.hook, keep_fds=True):
                assert p.fd is not None
                self.cleanup.callback(os.close, p.fd)
                if p.link.id in position:
                    found.append((position.pop(p.link.id), _Owned(p.pin, p.fd, p.link.id, p.link.prog_id)))
                else:
                    drop.append(p)
        found.sort(key=lambda t: t[0])
        return [o for _, o in found], drop

    def remove_leftovers(self) -> None:
        """The temporary pins a crashed run left behind, and maps pinned for a link that was never
        renamed into place."""
        r = self.ref
        for stack in self.stacks:
            directory = hook_dir(stack, r.namespace, r.device, r.hook)
            if os.path.isdir(directory):
                names = sorted(os.listdir(directory))
                for name in names:
                    if name.endswith(TEMP_SUFFIX):
                        hooks.remove_pinned_link(posixpath.join(directory, name), what=self.what(name))
                for name in names:
                    if name.endswith(MAPS_SUFFIX) and name.removesuffix(MAPS_SUFFIX) not in names:
                        bpffs.remove_tree(posixpath.join(directory, name))

    def to_detach(self) -> list[_Owned]:
        """run([]) in three parts for remove_programs; this one reads: the links nkplan owns at
        the hook, their programs kept (Retired) for a rollback. Then detach(), then remove_pins()."""
        self.remove_leftovers()
        try:
            state = hooks.query(self.ref)
        except KernelError as exc:
            if exc.errno in (errno.ENODEV, errno.ENOENT):
                return []  # the device (or its namespace) is gone: only pins remain
            raise
        owned, drop = self.owned(state)
        for p in drop:  # defunct links (detached out of band) or duplicates: only the pin goes
            bpffs.unpin(p.pin.path)
        for o in owned:
            self.retired.retire(self.ref, o.pin.program, o.pin.digest, o.prog_id)
        return owned

    def detach(self, owned: Sequence[_Owned]) -> None:
        for o in owned:  # a link detached meanwhile by someone else is no error (hooks.detach)
            hooks.detach(o.fd, what=self.what(o.pin.program))

    def remove_pins(self, gone: Sequence[_Owned]) -> None:
        for o in gone:
            bpffs.unpin(o.pin.path)
        self.remove_hook_dirs()

    def run(self, wanted: Sequence[ProgramRec]) -> None:
        r = self.ref
        wanted = [values.settle(rec) for rec in wanted]  # device references: the ifindexes of now
        self.remove_leftovers()
        try:
            state = hooks.query(r)
        except KernelError as exc:
            if not wanted and exc.errno in (errno.ENODEV, errno.ENOENT):
                self.remove_hook_dirs()  # the device (or its namespace) is gone: only pins remain
                return
            raise
        owned, drop = self.owned(state)
        for p in drop:  # defunct links (detached out of band) or duplicates: only the pin goes
            bpffs.unpin(p.pin.path)

        # classify: keep the longest run already in declared order, re-attach the rest
        index = {rec.program: i for i, rec in enumerate(wanted)}
        live: dict[str, _Owned] = {}
        gone: list[_Owned] = []
        for o in owned:
            if o.pin.program in index and o.pin.program not in live:
                live[o.pin.program] = o
            else:
                gone.append(o)
        kept = list(live.values())
        # a program with no object file (a rollback's record) and no retired instance can only
        # stay where it is: weigh those so heavily that the kept run includes them if it can
        weights = [1 + (1 << 8) * (not self.loadable(wanted[index[o.pin.program]])) for o in kept]
        in_order = _longest_in_order([index[o.pin.program] for o in kept], weights)
        stay = {kept[i].pin.program for i in in_order if not self.put_back(wanted[index[kept[i].pin.program]], kept[i])}

        # phase 0: load what must be loaded (nothing changes on the hook yet)
        attach: list[_Attach] = []
        updates: list[tuple[_Owned, ProgramRec, _Prog | None]] = []
        for rec in wanted:
            if rec.program in stay:
                o = live[rec.program]
                new = None
                if o.pin.digest != rec.digest[: objfile.DIGEST_CHARS] or self.shared_of(o) != rec.shared:
                    new = self.load(rec, o)
                updates.append((o, rec, new))
            else:
                old = live.get(rec.program)
                attach.append(_Attach(rec, self.load(rec, old), old))

        # phase 1: attach, anchored, revision-checked; undone if anything fails
        self.attach_all(wanted, attach, live, stay, owned, state)

        # phase 2: commit
        for a in attach:
            self.pin_new(a)
        for o, rec, new in updates:
            self.settle(o, rec, new)
        for o in gone:
            self.retired.retire(self.ref, o.pin.program, o.pin.digest, o.prog_id)
            hooks.detach(o.fd, what=self.what(o.pin.program))
            bpffs.unpin(o.pin.path)
        if not wanted:
            self.remove_hook_dirs()
        else:
            for stack in self.stacks:
                if stack != self.owner:  # adopted from another stack: its directory is empty now
                    bpffs.remove_tree(hook_dir(stack, r.namespace, r.device, r.hook))
            # the links pinned in the owner's directory now: those that stayed and the new ones
            # (every other pin of the hook was removed above), known without reading them back
            self.mark({live[name].link_id for name in stay} | {a.link_id for a in attach})

    def mark(self, ours: set[int]) -> None:
        """The hook's marker (hookmarks.py): the digest of the programs as applied, and the
        programs others have attached there now (acknowledged: drift is what changes after);
        `ours`: the link ids of nkplan's links at the hook."""
        r = self.ref
        directory = hook_dir(self.owner, r.namespace, r.device, r.hook)
        if self.applied is None:  # a record without one (an older saved plan): no drift to tell
            hookmarks.remove(directory)
            return
        foreign = []
        for e in hooks.query(r).entries:
            if e.link_id not in ours:
                try:
                    fd = info.open_prog(e.prog_id)
                except KernelError:
                    continue  # detached meanwhile
                try:
                    foreign.append((e.prog_id, info.prog_info(fd).name))
                finally:
                    os.close(fd)
        hookmarks.write(directory, self.applied, foreign)

    def put_back(self, rec: ProgramRec, o: _Owned) -> bool:
        """A rollback's record names the instance that ran before (prog_id) and this apply moved it
        (a new instance of the same object runs now, the old one is retired): attach the old one
        again, so the rollback leaves the very programs it found."""
        return not rec.object and bool(rec.prog_id) and rec.prog_id != o.prog_id and self.loadable(rec)

    def loadable(self, rec: ProgramRec) -> bool:
        return bool(rec.object) or self.retired.has(self.ref, rec.program, rec.digest)

    def maps_of(self, o: _Owned) -> dict[str, int]:
        """{kernel map name: fd} of the maps the program of an owned link uses (names the kernel
        cut to the same 15 characters are left out: which is which cannot be told)."""
        prog_fd = info.open_prog(o.prog_id)
        self.cleanup.callback(os.close, prog_fd)
        maps = _open_prog_maps(prog_fd, self.cleanup)
        names = [name for name, _fd in maps]
        return {name: fd for name, fd in maps if names.count(name) == 1}

    def load(self, rec: ProgramRec, old: _Owned | None = None) -> _Prog:
        """The program to attach: loaded from its object file, or (no object file: a rollback's
        record read from the kernel) the instance this process detached before. A new instance
        of a program already at the hook (`old`: updated in place or moved) takes over the old
        instance's maps where their definition is unchanged, so counters and state carry on."""
        if not rec.object:
            fd = self.retired.take(self.ref, rec.program, rec.digest)
            if fd is None:
                raise KernelError(
                    f"cannot attach {self.what(rec.program)}: no object file is known for it "
                    f"(digest {rec.digest}) and this process did not detach it earlier"
                )
            self.cleanup.callback(os.close, fd)
            return _Prog(fd)
        _check_digest(rec)
        reuse: dict[str, int] = {}
        if old is not None:
            # a map that was shared and no longer is: the new instance starts with one of its own
            dropped = set(self.shared_of(old)) - set(rec.shared)
            reuse = {name: fd for name, fd in self.maps_of(old).items() if name not in dropped}
        if rec.shared:
            shared = sharedmaps.open_shared(self.owner, rec.shared)
            for fd in shared.values():
                self.cleanup.callback(os.close, fd)
            reuse.update(shared)
        obj = libbpf.load_program(rec.object, rec.program, reuse=reuse or None, patches=values.patches(rec))
        self.cleanup.callback(obj.close)
        prog_fd = obj.program_fd(rec.program)
        if rec.shared:
            self.check_shared(rec, prog_fd)
        if rec.entries_key:  # declared entries, before it is attached: it never runs without them
            fds = {name[: C.BPF_OBJ_NAME_LEN - 1]: fd for name, fd in obj.map_fds().items()}
            values.write_entries(rec, fds, self.what(rec.program))
        return _Prog(prog_fd, obj)

    def check_shared(self, rec: ProgramRec, prog_fd: int) -> None:
        """libbpf takes a pinned map only if the definitions agree (the plan checked the object
        files; a map changed by hand since would otherwise go unnoticed)."""
        ids = self.shared_ids()
        held = {ids[i] for i in info.prog_info(prog_fd).map_ids if i in ids}
        missing = sorted(set(rec.shared) - held)
        if missing:
            raise KernelError(
                f"loading {self.what(rec.program)}: the pinned shared map {missing[0]} no longer has the definition "
                f"the program's object gives it (changed outside nkplan?): plan again"
            )

    def attach_all(
        self,
        wanted: Sequence[ProgramRec],
        attach: list[_Attach],
        live: dict[str, _Owned],
        stay: set[str],
        owned: list[_Owned],
        state: HookState,
    ) -> None:
        by_name = {a.rec.program: a for a in attach}
        done: list[_Attach] = []
        prev: int | None = None  # link id of the previous declared program, in its final place
        revision = state.revision
        # An empty netkit hook reports revision 1 whatever its real one (PROG_QUERY finds no active
        # entry and says 1; the device's bundle keeps counting: 3 after one attach and detach), so
        # a hook that held programs once refuses expected_revision=1 with ESTALE ("revision 1,
        # planned against revision 1"; e.g. after the '-new' pin a kill left was removed). Attach
        # the first program unchecked there, then check the hook holds that link alone (else
        # undone, as stale) and chain the revision the kernel reports now. tcx frees an emptied
        # hook's entry, so its next one starts at revision 1 and the read one is right.
        blind = not state.entries and self.ref.hook in C.NETKIT_HOOKS
        try:
            for rec in wanted:
                if rec.program in stay:
                    prev = live[rec.program].link_id
                    continue
                a = by_name[rec.program]
                if prev is not None:
                    anchor = Anchor("after", link_id=prev)
                elif owned:
                    anchor = Anchor("before", link_id=owned[0].link_id)
                else:
                    anchor = Anchor.last()
                check = 0 if blind else revision
                a.fd = hooks.attach(self.ref, a.prog.fd, anchor=anchor, expected_revision=check, program=rec.program)
                self.cleanup.callback(os.close, a.fd)
                done.append(a)
                a.link_id = info.link_info(a.fd).id
                if blind:
                    revision, blind = self.alone(a), False
                else:
                    revision += 1  # our own attach bumps the hook's revision by one
                prev = a.link_id
        except BaseException:
            for a in reversed(done):
                assert a.fd is not None
                try:
                    hooks.detach(a.fd, what=self.what(a.rec.program))
                except KernelError:
                    pass  # the fd closes anyway, which releases the link
            raise

    def alone(self, a: _Attach) -> int:
        """After an unchecked first attach to a hook read empty: the hook's revision now, if it holds
        that link alone; StaleHookError if another process attached there meanwhile."""
        now = hooks.query(self.ref)
        if now.link_ids != (a.link_id,):
            raise StaleHookError(
                f"attaching {self.what(a.rec.program)}: the hook changed concurrently (it was empty when "
                f"read and holds {len(now.entries)} programs now): another process attached a program there; "
                "nothing was changed, plan again",
                0,
                now.revision,
            )
        return now.revision

    def pin_new(self, a: _Attach) -> None:
        """Pin a new link (and its maps) at its final name; for a moved program, then detach the
        old instance, whose pin the rename has just replaced."""
        assert a.fd is not None
        final = self.final_pin(a.rec)
        temp = final.path + TEMP_SUFFIX
        bpffs.pin(a.fd, temp)
        bpffs.remove_tree(final.maps_dir)
        if a.rec.pin_maps:
            _pin_maps(final, a.prog)
        _rename(temp, final.path)
        old = a.replaces
        if old is not None:
            self.retired.retire(self.ref, old.pin.program, old.pin.digest, old.prog_id)
            hooks.detach(old.fd, what=self.what(old.pin.program))
            if old.pin.path != final.path:
                bpffs.unpin(old.pin.path)

    def settle(self, o: _Owned, rec: ProgramRec, new: _Prog | None) -> None:
        """A program that stays where it is: swap it in place if its object changed (LINK_UPDATE,
        only if the link still runs the program it ran when read), then bring pin and maps in line."""
        final = self.final_pin(rec)
        if new is not None:
            self.swap(o, rec, new, final)
            return
        writable = any(not g.section.startswith(".rodata") for g in rec.globals)
        # the same instance: declared entries and .data/.bss values in place. `entries_key` says the
        # entries are declared ones: a record read raw from the kernel (a rollback's) lists every
        # entry of every map, counters included, which must not be written back
        if rec.entries_key or writable:
            fds = self.maps_of(o)
            if rec.entries_key:
                values.write_entries(rec, fds, self.what(rec.program))
            if writable:
                values.write_globals(rec, fds, self.what(rec.program))
        if o.pin.path != final.path:  # same program, another owner's directory (adoption)
            _rename(o.pin.path, final.path)
            if os.path.isdir(o.pin.maps_dir):
                _rename(o.pin.maps_dir, final.maps_dir)
        has_maps = os.path.isdir(final.maps_dir)
        if rec.pin_maps and not has_maps:
            prog_fd = info.open_prog(o.prog_id)
            try:
                _pin_prog_maps(final, prog_fd)
            finally:
                os.close(prog_fd)
        elif has_maps and not rec.pin_maps:
            bpffs.remove_tree(final.maps_dir)

    def swap(self, o: _Owned, rec: ProgramRec, new: _Prog, final: LinkPin) -> None:
        """Update in place: the new instance's maps pinned (at the new digest's name), then
        LINK_UPDATE, then the pin renamed to the new digest. A failure after the swap swaps the
        old program back, so a pin never names a program other than the one its link runs (the
        reader identifies programs by pin name)."""
        what = self.what(rec.program)
        # the same digest (only the shared maps it uses changed): the maps directory is the running
        # instance's own, so it is touched only once the new instance runs
        same = final.maps_dir == o.pin.maps_dir
        old_prog = info.open_prog(o.prog_id)
        try:
            if not same:
                bpffs.remove_tree(final.maps_dir)  # a leftover of an interrupted attempt
                if rec.pin_maps:
                    _pin_maps(final, new)
            hooks.update(o.fd, new.fd, old_prog_fd=old_prog, what=what)
        except BaseException:
            os.close(old_prog)
            if not same:
                _quietly(bpffs.remove_tree, final.maps_dir)
            raise
        try:
            _rename(o.pin.path, final.path)
        except KernelError as exc:
            try:
                hooks.update(o.fd, old_prog, old_prog_fd=new.fd, what=what)
            except KernelError as back:
                # kept, so the rollback (set_programs with the record read before) attaches it again
                self.retired.retire_fd(self.ref, o.pin.program, o.pin.digest, old_prog)
                raise KernelError(
                    f"{exc}\nputting the old {what} back was refused too ({back}): its link, pinned as "
                    f"{o.pin.path}, runs the new object until the rollback or the next apply",
                    exc.errno,
                ) from None
            os.close(old_prog)
            if not same:
                _quietly(bpffs.remove_tree, final.maps_dir)
            raise
        self.retired.retire_fd(self.ref, o.pin.program, o.pin.digest, old_prog)
        if not same:
            bpffs.remove_tree(o.pin.maps_dir)
        else:  # the new instance's maps in place of the old one's
            bpffs.remove_tree(final.maps_dir)
            if rec.pin_maps:
                _pin_maps(final, new)


def _quietly(remove: Callable[[str], None], path: str) -> None:
    """Best effort cleanup while another error is on its way out (that one is reported)."""
    try:
        remove(path)
    except KernelError:
        pass


def set_programs(before: HookRec | None, after: HookRec | None, retired: Retired) -> None:
    """seam.Kernel.set_programs on the running kernel (see the module docstring). The hook is read
    afresh; `before` only contributes its owner (whose pins count as nkplan's too, for adoption),
    so an interrupted or repeated call converges instead of failing."""
    rec = after if after is not None else before
    if rec is None:
        return
    owner = (after.owner if after is not None else None) or (before.owner if before is not None else None)
    if not owner:
        raise InternalError(f"set_programs at {rec.hook} of {rec.device}: no owning stack")
    wanted = after.programs if after is not None else ()
    names = [p.program for p in wanted]
    if len(set(names)) != len(names):
        raise InternalError(f"set_programs at {rec.hook} of {rec.device}: a program is declared twice: {names}")
    stacks = [owner]
    if before is not None and before.owner and before.owner != owner:
        stacks.append(before.owner)  # adopted from another stack: its pins of this hook are ours now
    with ExitStack() as cleanup:
        writer = _HookWriter(HookRef(rec.namespace, rec.device, rec.hook), owner, stacks, cleanup, retired)
        if before is not None:
            writer.was_shared = {p.program: p.shared for p in before.programs if p.shared}
        writer.applied = after.applied if after is not None else None
        writer.run(wanted)


_CHUNK = 256  # hooks read before their programs are detached, at most


def remove_programs(befores: Sequence[HookRec], retired: Retired) -> None:
    """seam.Kernel.delete_programs: set_programs(before, None) for every hook, ordered for the
    kernel's sake: every hook read first, then every program detached, back to back, and only
    then the pins and directories removed. Each detach waits for an RCU grace period (under
    rtnl); work that queues RCU callbacks in between (removing a pin: bpffs frees the inode after
    a grace period; closing the socket a device lookup opens) made the next detach wait for more,
    +45% per hook (tests/bench/bench.py --unpins). All or nothing, as one hook's delete is with the
    applier's undo: if anything fails, each hook touched is put back as it was, from the
    programs this process detached (set_programs with its record converges from what it finds)."""
    touched: list[HookRec] = []
    try:
        # in chunks: the links' fds stay open from reading to detaching, and the open-files limit
        # is often 1024 (the programs kept for the rollback need one each already)
        for start in range(0, len(befores), _CHUNK):
            with ExitStack() as cleanup:
                done: list[tuple[_HookWriter, list[_Owned]]] = []
                for before in befores[start : start + _CHUNK]:
                    if not before.owner:
                        raise InternalError(f"deleting the programs at {before.hook} of {before.device}: no owner")
                    ref = HookRef(before.namespace, before.device, before.hook)
                    writer = _HookWriter(ref, before.owner, [before.owner], cleanup, retired)
                    touched.append(before)
                    done.append((writer, writer.to_detach()))
                for writer, gone in done:
                    writer.detach(gone)
                for writer, gone in done:
                    writer.remove_pins(gone)
    except KernelError as exc:
        refused = _put_back(touched, retired)
        if not refused:
            raise
        raise KernelError(
            f"{exc}\nputting back the programs at {refused[0]} was refused too: it stays behind without them; "
            "run `nkplan plan` to see it",
            exc.errno,
        ) from None
    except BaseException:
        _put_back(touched, retired)
        raise


def _put_back(touched: Sequence[HookRec], retired: Retired) -> list[str]:
    """remove_programs failed: each hook it touched as it was (in reverse); the refusals, in words."""
    refused = []
    for before in reversed(touched):
        try:
            set_programs(None, before, retired)
        except KernelError as exc:
            refused.append(f"{HookRef(before.namespace, before.device, before.hook).words()}: {exc}")
    return refused
