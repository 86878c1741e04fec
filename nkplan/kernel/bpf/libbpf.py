"""libbpf (libbpf.so.1, Debian's libbpf1) through ctypes: open an ELF BPF object, load one or
more of its programs, hand out program and map fds. No hand-written ELF loader.

libbpf 1.1 predates netkit: it knows SEC("tc") (program type SCHED_CLS, which tcx and netkit
hooks take) but not SEC("netkit/...") or SEC("tcx/..."). A program whose section libbpf cannot
place (type UNSPEC) is therefore set to SCHED_CLS before loading; a program of any other type is
refused in words. Attaching is not libbpf's job here (mprog.py, raw bpf()).

libbpf's own messages (including the verifier log of a refused program) go to a print callback
installed once for the process; messages are kept only while a BpfObject call runs, for error
messages, and never printed: nothing raw reaches a user."""

from __future__ import annotations

import ctypes
import errno
import os
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache

from nkplan.core.records import MapDef
from nkplan.errors import CapabilityError, KernelError
from nkplan.kernel.bpf import consts as C
from nkplan.kernel.bpf import info
from nkplan.kernel.bpf.errors import BpfObjectError, ProgramLoadError
from nkplan.spec import objfile
from nkplan.spec.objects import InspectError

_VP = ctypes.c_void_p
_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, _VP)
_LOG_BUF = 1 << 18  # one libbpf message; a verifier log comes as a single message
_LIBBPF_WARN, _LIBBPF_INFO = 0, 1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.vsnprintf.argtypes = [_VP, ctypes.c_size_t, ctypes.c_char_p, _VP]
_lock = threading.RLock()  # libbpf's print hook is process-wide: one capture at a time
_captured: list[str] | None = None


def _on_print(level: int, fmt: bytes | None, args: int | None) -> int:
    # Runs inside libbpf. A va_list can be consumed once, so format into one large buffer.
    if _captured is None or level > _LIBBPF_INFO or fmt is None:
        return 0
    buf = ctypes.create_string_buffer(_LOG_BUF)
    _libc.vsnprintf(ctypes.addressof(buf), _LOG_BUF, fmt, args)
    _captured.append(buf.value.decode(errors="replace"))
    return 0


_on_print_c = _PRINT_FN(_on_print)  # referenced for the life of the process: libbpf keeps the pointer


def _sig(lib: ctypes.CDLL, name: str, restype: type | None, *argtypes: type) -> None:
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)


@cache
def _lib() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
    except OSError as exc:
        raise CapabilityError(
            f"cannot load BPF objects: libbpf.so.1 not found (Debian package libbpf1): {exc}"
        ) from exc
    _sig(lib, "libbpf_set_print", _VP, _PRINT_FN)
    _sig(lib, "bpf_object__open_file", _VP, ctypes.c_char_p, _VP)
    _sig(lib, "bpf_object__load", ctypes.c_int, _VP)
    _sig(lib, "bpf_object__close", None, _VP)
    _sig(lib, "bpf_object__next_program", _VP, _VP, _VP)
    _sig(lib, "bpf_object__find_program_by_name", _VP, _VP, ctypes.c_char_p)
    _sig(lib, "bpf_object__next_map", _VP, _VP, _VP)
    _sig(lib, "bpf_program__name", ctypes.c_char_p, _VP)
    _sig(lib, "bpf_program__section_name", ctypes.c_char_p, _VP)
    _sig(lib, "bpf_program__type", ctypes.c_int, _VP)
    _sig(lib, "bpf_program__set_type", ctypes.c_int, _VP, ctypes.c_int)
    _sig(lib, "bpf_program__set_autoload", ctypes.c_int, _VP, ctypes.c_bool)
    _sig(lib, "bpf_program__fd", ctypes.c_int, _VP)
    _sig(lib, "bpf_map__name", ctypes.c_char_p, _VP)
    _sig(lib, "bpf_map__fd", ctypes.c_int, _VP)
    _sig(lib, "bpf_map__is_internal", ctypes.c_bool, _VP)
    _sig(lib, "bpf_map__type", ctypes.c_int, _VP)
    _sig(lib, "bpf_map__key_size", ctypes.c_uint32, _VP)
    _sig(lib, "bpf_map__value_size", ctypes.c_uint32, _VP)
    _sig(lib, "bpf_map__max_entries", ctypes.c_uint32, _VP)
    _sig(lib, "bpf_map__map_flags", ctypes.c_uint32, _VP)
    _sig(lib, "bpf_map__reuse_fd", ctypes.c_int, _VP, ctypes.c_int)
    _sig(lib, "bpf_map__initial_value", _VP, _VP, ctypes.POINTER(ctypes.c_size_t))
    _sig(lib, "bpf_map__set_initial_value", ctypes.c_int, _VP, _VP, ctypes.c_size_t)
    lib.libbpf_set_print(_on_print_c)
    return lib


@dataclass(frozen=True)
class ProgramSpec:
    name: str  # the ELF function name (the kernel keeps only 15 characters of it)
    section: str
    type: int  # what libbpf made of the section; C.BPF_PROG_TYPE_UNSPEC if it could not tell


class BpfObject:
    """One opened ELF object (libbpf's struct bpf_object). Open needs no privileges; load does.
    close() (or leaving a with-block, or garbage collection) frees libbpf's state and closes the
    object's program and map fds: attached links and pins keep what they hold alive."""

    def __init__(self, path: str) -> None:
        self.path = path
        why = objfile.problem(path)
        if why is not None:
            raise BpfObjectError(f"{path}: {why}", path)
        lib = _lib()
        with _lock:
            global _captured
            _captured = []
            try:
                ptr = lib.bpf_object__open_file(os.fsencode(path), None)
                err, said = ctypes.get_errno(), _captured
            finally:
                _captured = None
        if not ptr:
            detail = _last_line(said) or os.strerror(err or errno.EINVAL)
            raise BpfObjectError(f"{path}: libbpf cannot open it: {detail}", path)
        self._obj: int = ptr
        self._close = weakref.finalize(self, lib.bpf_object__close, ptr)
        self.loaded = False

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._close()

    def _alive(self) -> int:
        if not self._close.alive:
            raise ValueError(f"BPF object {self.path} is closed")
        return self._obj

    def _walk(self, next_fn: Callable[[int, int | None], int | None]) -> list[int]:
        """libbpf's iteration (bpf_object__next_program / __next_map): every element, in order."""
        obj, out = self._alive(), []
        item = next_fn(obj, None)
        while item:
            out.append(item)
            item = next_fn(obj, item)
        return out

    def _progs(self) -> list[int]:
        return self._walk(_lib().bpf_object__next_program)

    def programs(self) -> list[ProgramSpec]:
        lib = _lib()
        return [
            ProgramSpec(
                (lib.bpf_program__name(p) or b"").decode(),
                (lib.bpf_program__section_name(p) or b"").decode(),
                lib.bpf_program__type(p),
            )
            for p in self._progs()
        ]

    def _prog(self, name: str) -> int:
        prog = _lib().bpf_object__find_program_by_name(self._alive(), name.encode())
        if not prog:
            have = ", ".join(p.name for p in self.programs()) or "none"
            raise BpfObjectError(f"{self.path}: the object has no program {name} (it has: {have})", self.path, name)
        return int(prog)

    def _maps(self) -> list[int]:
        return self._walk(_lib().bpf_object__next_map)

    def _own_maps(self) -> list[tuple[int, MapDef]]:
        """The object's own maps (SEC(".maps")) with their definitions, named as the kernel will
        name them; sections' maps (.data, .bss, .rodata) are left out."""
        lib, out = _lib(), []
        for m in self._maps():
            if lib.bpf_map__is_internal(m):
                continue
            name = (lib.bpf_map__name(m) or b"").decode()[: C.BPF_OBJ_NAME_LEN - 1]
            out.append((m, MapDef(name, lib.bpf_map__type(m), lib.bpf_map__key_size(m), lib.bpf_map__value_size(m),
                                  lib.bpf_map__max_entries(m), lib.bpf_map__map_flags(m))))  # fmt: skip
        return out

    def map_defs(self) -> tuple[MapDef, ...]:
        """Definitions of the object's own maps (needs no privileges)."""
        return tuple(d for _, d in self._own_maps())

    def reuse_maps(self, existing: Mapping[str, int]) -> None:
        """Before load: let this object's maps take over existing maps ({kernel map name: fd})
        of the same name and definition, as libbpf's pin-by-name does, so their contents
        (counters, state) carry over to this instance. Sections' maps (.data, .bss, .rodata)
        are never reused: they hold this object's own initial values."""
        lib = _lib()
        for m, ours in self._own_maps():
            fd = existing.get(ours.name)
            if fd is None or info.map_info(fd).definition() != ours:
                continue  # new, or redefined: the new instance starts with a map of its own
            rc = lib.bpf_map__reuse_fd(m, fd)
            if rc < 0:
                raise KernelError(f"{self.path}: reusing the existing map {ours.name}: {os.strerror(-rc)}", -rc)

    def section_maps(self) -> dict[str, int]:
        """{data section name: libbpf map} of the object's sections' maps (.rodata, .data, .bss
        and their variants). libbpf names them after the object (at most 8 characters), a dot
        and the section, cut to the kernel's 15: the part from the first dot is the section."""
        lib, out = _lib(), {}
        for m in self._maps():
            if lib.bpf_map__is_internal(m):
                name = (lib.bpf_map__name(m) or b"").decode()
                if "." in name:
                    out[name[name.index(".") :]] = m
        return out

    def set_sections(self, images: Mapping[str, bytes]) -> None:
        """Before load: the initial content of data sections ({section name: bytes of the whole
        section}), libbpf's bpf_map__set_initial_value; .rodata is frozen once loaded."""
        lib, maps = _lib(), self.section_maps()
        for section, image in images.items():
            m = maps.get(section)
            if m is None:
                m = next((v for k, v in maps.items() if len(k) >= 7 and section.startswith(k)), None)
            if m is None:
                raise BpfObjectError(f"{self.path}: the object has no data section {section}", self.path)
            size = ctypes.c_size_t(0)
            if not lib.bpf_map__initial_value(m, ctypes.byref(size)) or size.value != len(image):
                raise BpfObjectError(
                    f"{self.path}: section {section} is {size.value} bytes, the values planned for it {len(image)}; "
                    "plan again", self.path
                )
            buf = ctypes.create_string_buffer(image, len(image))
            rc = lib.bpf_map__set_initial_value(m, buf, len(image))
            if rc < 0:
                raise KernelError(f"{self.path}: setting the values of {section}: {os.strerror(-rc)}", -rc)

    def section_image(self, section: str) -> bytes:
        """The current initial content of a data section (the object's, until set_sections)."""
        m = self.section_maps().get(section)
        if m is None:
            raise BpfObjectError(f"{self.path}: the object has no data section {section}", self.path)
        size = ctypes.c_size_t(0)
        ptr = _lib().bpf_map__initial_value(m, ctypes.byref(size))
        return ctypes.string_at(ptr, size.value) if ptr else bytes(size.value)

    def load(self, programs: Sequence[str]) -> None:
        """Load the named programs (the object's others stay unloaded) and every map."""
        lib, wanted = _lib(), {self._prog(n): n for n in programs}
        for prog in self._progs():
            lib.bpf_program__set_autoload(prog, prog in wanted)
        for prog, name in wanted.items():
            ptype = lib.bpf_program__type(prog)
            if ptype == C.BPF_PROG_TYPE_UNSPEC:
                lib.bpf_program__set_type(prog, C.BPF_PROG_TYPE_SCHED_CLS)
            elif ptype != C.BPF_PROG_TYPE_SCHED_CLS:
                section = (lib.bpf_program__section_name(prog) or b"").decode()
                raise BpfObjectError(
                    f'program {name} in {self.path} is in section "{section}" (program type {ptype}); '
                    'tcx and netkit hooks run only tc programs (SCHED_CLS): put it in SEC("tc")',
                    self.path,
                    name,
                )
        with _lock:
            global _captured
            _captured = []
            try:
                rc = lib.bpf_object__load(self._alive())
                said = _captured
            finally:
                _captured = None
        if rc < 0:
            raise _load_error(self.path, ", ".join(programs), -rc, said)
        self.loaded = True

    def program_fd(self, name: str) -> int:
        """The loaded program's fd (owned by this object: do not close it)."""
        fd = int(_lib().bpf_program__fd(self._prog(name)))
        if fd < 0:
            raise KernelError(f"program {name} of {self.path} is not loaded", errno.EINVAL)
        return fd

    def map_fds(self) -> dict[str, int]:
        """{map name: fd} of the loaded object's maps (owned by this object: do not close them)."""
        lib, out = _lib(), {}
        for m in self._maps():
            fd = lib.bpf_map__fd(m)
            if fd >= 0:
                out[(lib.bpf_map__name(m) or b"").decode()] = int(fd)
        return out


def load_program(
    path: str,
    program: str,
    reuse: Mapping[str, int] | None = None,
    patches: Mapping[str, Sequence[tuple[int, bytes]]] | None = None,
) -> BpfObject:
    """Open path and load just `program` (as SCHED_CLS) and the maps, taking over the compatible
    ones of `reuse` (BpfObject.reuse_maps), with the data sections' initial content patched
    ({section: [(offset, bytes)]}: the instance's globals); the caller closes it."""
    obj = BpfObject(path)
    try:
        if patches:
            images = {}
            for section, parts in patches.items():
                image = bytearray(obj.section_image(section))
                for offset, data in parts:
                    if offset + len(data) > len(image):
                        raise BpfObjectError(f"{path}: a value lies beyond section {section}; plan again", path)
                    image[offset : offset + len(data)] = data
                images[section] = bytes(image)
            obj.set_sections(images)
        if reuse:
            obj.reuse_maps(reuse)
        obj.load([program])
    except BaseException:
        obj.close()
        raise
    return obj


def programs(path: str) -> list[ProgramSpec]:
    """The programs in an object file (for validation; needs no privileges)."""
    with BpfObject(path) as obj:
        return obj.programs()


def inspect(path: str) -> tuple[list[ProgramSpec], tuple[MapDef, ...]]:
    """The programs in an object file and its own maps' definitions (needs no privileges)."""
    with BpfObject(path) as obj:
        return obj.programs(), obj.map_defs()


def inspect_names(path: str) -> tuple[list[str], tuple[MapDef, ...]]:
    """spec.objects.Inspect on libbpf: program names and own maps. Only libbpf's refusal to open
    the file becomes an InspectError (a problem of the spec); anything else, a bug in this
    wrapper included, propagates as what it is."""
    try:
        programs, maps = inspect(path)
    except BpfObjectError as exc:
        raise InspectError(str(exc)) from None
    return [p.name for p in programs], maps


def _last_line(said: list[str]) -> str:
    lines = [ln.strip() for msg in said for ln in msg.splitlines() if ln.strip()]
    return lines[-1].removeprefix("libbpf: ") if lines else ""


def _load_error(path: str, program: str, err: int, said: list[str]) -> KernelError:
    text = "".join(said)
    begin, end = text.find("-- BEGIN PROG LOAD LOG --"), text.find("-- END PROG LOAD LOG --")
    doing = f"loading {program} from {path}"
    if begin >= 0:
        log = text[begin : end if end > begin else None].split("\n", 1)[-1]
        lines = [ln for ln in log.splitlines() if ln.strip()]
        excerpt = "\n".join(lines[-12:])
        return ProgramLoadError(f"{doing}: the verifier refused it:\n{excerpt}", err, log)
    if err == errno.EPERM:
        why = "not permitted: loading BPF programs needs root (CAP_BPF or CAP_SYS_ADMIN)"
        return ProgramLoadError(f"{doing}: {why}", err, "")
    detail = _last_line(said) or os.strerror(err)
    return ProgramLoadError(f"{doing}: libbpf: {detail}", err, text)
