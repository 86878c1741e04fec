"""Named network namespaces the way iproute2 keeps them (a bind mount of the namespace file at
/run/netns/NAME), and the thread trick nkplan uses to work inside one.

setns(2) and unshare(2) on CLONE_NEWNET change only the calling thread, and a socket keeps the
namespace it was created in. So every hop into another namespace happens in a worker thread: it
enters the namespace, does or opens what it needs there, and leaves. The caller's thread never
leaves its own namespace, so a failure halfway can never leave nkplan working in the wrong place.
Short hops (in_namespace) go to one long-lived worker that returns to the process's own namespace
after each job: starting a thread per hop was most of the cost of a hop, and an apply hops into
a pod's namespace several times per BPF hook. No subprocess, no pyroute2 NetNS helper."""

from __future__ import annotations

import errno
import os
import queue
import socket
import struct
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from nkplan.errors import KernelError
from nkplan.kernel import faultpoint, libc
from nkplan.kernel.netlink import consts as C

NETNS_RUN_DIR = "/run/netns"
T = TypeVar("T")
SO_NETNS_COOKIE = 71  # asm-generic/socket.h, Linux >= 5.14: the cookie of the socket's namespace


def setns(fd: int) -> None:
    """Move the calling thread into the network namespace behind fd."""
    libc.setns(fd, C.CLONE_NEWNET)


def unshare_net() -> None:
    """Move the calling thread into a new, empty network namespace."""
    libc.unshare(C.CLONE_NEWNET, "unshare(CLONE_NEWNET)")


def _mount(source: str, target: str, flags: int) -> None:
    """A bind or propagation change: no filesystem type, no data."""
    libc.mount(source, target, "none", flags)


def ns_path(name: str) -> str:
    return os.path.join(NETNS_RUN_DIR, name)


def valid_name(name: str) -> bool:
    """What `ip netns add` accepts: a single, non-empty path component."""
    return bool(name) and "/" not in name and name not in (".", "..") and "\0" not in name


def named_namespaces() -> list[str]:
    """Names `ip netns list` would show, sorted; an absent /run/netns means none."""
    try:
        entries = os.scandir(NETNS_RUN_DIR)
    except FileNotFoundError:
        return []
    with entries:
        return sorted(e.name for e in entries if not e.name.startswith(".") and not e.is_dir(follow_symlinks=False))


def open_ns(name: str) -> int:
    return os.open(ns_path(name), os.O_RDONLY | os.O_CLOEXEC)


def thread_ns_fd() -> int:
    """An fd for the calling thread's own network namespace."""
    return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def run_in_thread(fn: Callable[[], T]) -> T:
    """Run fn in a fresh thread (which inherits the caller's namespace and may leave it freely)
    and hand back its result or exception."""
    result: list[T] = []
    failure: list[BaseException] = []

    def body() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=body, name="nkplan-netns", daemon=True)
    worker.start()
    interrupted: BaseException | None = None
    while worker.is_alive():
        # A Ctrl-C must not return while the worker is still changing the kernel: the caller's
        # undo would race it. The worker's jobs are a few netlink calls, so waiting is short.
        try:
            worker.join()
        except KeyboardInterrupt as exc:
            interrupted = exc
    if interrupted is not None:
        raise interrupted
    if failure:
        raise failure[0]
    return result[0]


def socket_cookie(sock: socket.socket) -> int | None:
    """The netns cookie of the namespace the socket lives in (None: a kernel without
    SO_NETNS_COOKIE). A cookie is the kernel's 64-bit id of a namespace, never reused while the
    system runs; bpf_get_netns_cookie() gives BPF programs the same number."""
    try:
        return int(struct.unpack("=Q", sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8))[0])
    except OSError as exc:
        if exc.errno in (errno.ENOPROTOOPT, errno.EINVAL):
            return None
        raise


def netns_cookie(name: str) -> int:
    """The cookie of named namespace `name` ("" the host's). KernelError: no such namespace, or a
    kernel that does not tell cookies."""

    def ask() -> int | None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            return socket_cookie(s)

    if not name:
        got = ask()
    else:
        try:
            fd = open_ns(name)
        except OSError as exc:
            raise KernelError(f"namespace {name}: {exc.strerror}", exc.errno) from None
        try:
            got = in_namespace(fd, ask)
        finally:
            os.close(fd)
    if got is None:
        raise KernelError("this kernel does not tell namespace cookies (SO_NETNS_COOKIE needs Linux 5.14)")
    return got


class _Job(Generic[T]):
    """One hop for the Hopper: fn inside the namespace behind fd, its result or exception."""

    def __init__(self, fd: int, fn: Callable[[], T]) -> None:
        self.fd, self.fn = fd, fn
        self.result: list[T] = []
        self.failure: list[BaseException] = []
        self.done = threading.Event()

    def run(self) -> None:
        try:
            setns(self.fd)
            self.result.append(self.fn())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            self.failure.append(exc)


class _Hopper:
    """A long-lived worker thread that runs one job at a time inside another namespace and goes
    back to the process's own namespace (the main thread's, which never leaves it) before it
    reports the job done: it never holds a namespace the caller may delete next. Should going
    back fail, the worker ends (which drops what it held) and the next hop starts another."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[_Job[object]] = queue.SimpleQueue()
        self.alive = True
        self.home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self.thread = threading.Thread(target=self._serve, name="nkplan-netns-hop", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            job = self.jobs.get()
            job.run()
            try:
                setns(self.home)
            except OSError:
                self.alive = False
                os.close(self.home)
                job.done.set()
                return
            job.done.set()


_hop_lock = threading.Lock()  # one hop at a time through the one worker
_hopper: _Hopper | None = None


def _forget_hopper() -> None:
    global _hop_lock, _hopper
    _hop_lock, _hopper = threading.Lock(), None  # a forked child has no worker thread


os.register_at_fork(after_in_child=_forget_hopper)


def in_namespace(fd: int | None, fn: Callable[[], T]) -> T:
    """Run fn inside the namespace behind fd (None: the caller's own, no thread needed), in the
    long-lived hop worker (a hop from inside a hop: in a thread of its own)."""
    global _hopper
    if fd is None:
        return fn()
    if _hopper is not None and threading.current_thread() is _hopper.thread:

        def nested() -> T:
            setns(fd)
            return fn()

        return run_in_thread(nested)
    job: _Job[T] = _Job(fd, fn)
    with _hop_lock:
        if _hopper is None or not _hopper.alive:
            _hopper = _Hopper()
        _hopper.jobs.put(job)  # type: ignore[arg-type]
        interrupted: BaseException | None = None
        while not job.done.is_set():
            # as in run_in_thread: a Ctrl-C must not return while the worker changes the kernel
            try:
                job.done.wait()
            except KeyboardInterrupt as exc:
                interrupted = exc
    if interrupted is not None:
        raise interrupted
    if job.failure:
        raise job.failure[0]
    return job.result[0]


# named namespace life cycle (what `ip netns add/del` does) --------------------------------------
def _ensure_run_dir() -> None:
    """Create /run/netns and make it a shared mount point, as iproute2 does, so that unmounting a
    namespace file in one mount namespace unmounts it everywhere and the namespace can be freed."""
    os.makedirs(NETNS_RUN_DIR, mode=0o755, exist_ok=True)
    try:
        _mount("", NETNS_RUN_DIR, C.MS_SHARED | C.MS_REC)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: not a mount point yet
            raise
        _mount(NETNS_RUN_DIR, NETNS_RUN_DIR, C.MS_BIND | C.MS_REC)
        _mount("", NETNS_RUN_DIR, C.MS_SHARED | C.MS_REC)


def create_named(name: str, setup: Callable[[], None]) -> None:
    """Create namespace NAME and run setup() inside it before returning. On any failure the
    half-made namespace is removed again. Raises FileExistsError if the name is taken."""
    faultpoint.reached(f"create namespace {name}")
    _ensure_run_dir()
    path = ns_path(name)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0))
    mounted = False

    def make() -> None:
        nonlocal mounted
        unshare_net()
        _mount("/proc/thread-self/ns/net", path, C.MS_BIND)
        mounted = True
        setup()

    try:
        run_in_thread(make)
    except BaseException:
        if mounted:
            try:
                libc.umount2(path, C.MNT_DETACH)
            except OSError:
                pass
        try:
            os.unlink(path)
        except OSError:
            pass
        raise


def delete_named(name: str) -> None:
    """Unmount and remove /run/netns/NAME (like `ip netns del`). The kernel frees the namespace
    once nothing else holds it. Raises FileNotFoundError if there is no such name."""
    path = ns_path(name)
    if not os.path.lexists(path):
        raise FileNotFoundError(errno.ENOENT, f"no namespace {name}", path)
    faultpoint.reached(f"delete namespace {name}")
    try:
        libc.umount2(path, C.MNT_DETACH)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: a stale file that is not mounted; just remove it
            raise
    os.unlink(path)
