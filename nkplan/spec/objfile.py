"""A BPF object file as the planner sees it, without loading anything: is it an ELF BPF object,
and what is its content identity. Pure (hashlib and file reads only; no ctypes), so validation
and planning may use it without root.

Content identity: the SHA-256 of the file's bytes. It names, in the pin path, which build of
which object a link runs (kernel/bpf/pins.py), so a rebuilt object with different bytes plans an in-place
update and an unchanged one plans nothing, wherever the program sits on its hook."""

from __future__ import annotations

import hashlib

ELF_MAGIC = b"\x7fELF"
EM_BPF = 247  # e_machine of BPF objects (clang -target bpf)
_EI_CLASS, _EI_DATA, _E_MACHINE = 4, 5, 18
DIGEST_CHARS = 16  # hex characters kept in pin names: 64 bits, plenty to tell builds apart


def problem(path: str) -> str | None:
    """Why path cannot be a BPF object file (words for an error message), or None if its ELF
    header says it is one. Which programs it holds takes libbpf (libbpf.programs)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(20)
    except FileNotFoundError:
        return "no such file"
    except IsADirectoryError:
        return "is a directory, not an object file"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if head[:4] != ELF_MAGIC:
        return "not an ELF object file (compile it with clang -target bpf -c)"
    if len(head) < 20:
        return "a truncated ELF file"
    machine = int.from_bytes(head[_E_MACHINE:20], "little" if head[_EI_DATA] == 1 else "big")
    if machine != EM_BPF:
        return f"an ELF object for another machine (e_machine {machine}), not BPF (compile with clang -target bpf)"
    return None


def digest(path: str) -> str:
    """SHA-256 of the file's content, hex (all 64 characters)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()
