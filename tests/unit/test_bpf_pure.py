"""The pure half of nkplan.kernel.bpf: pin layout, object file checks, anchors, wording; and that
importing it loads no ctypes (planning code may use it without root)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nkplan.kernel.bpf import pins
from nkplan.spec import objfile

PURE_BPF = [
    "nkplan.kernel.bpf.consts",
    "nkplan.spec.objfile",
    "nkplan.kernel.bpf.pins",
    "nkplan.kernel.bpf.errors",
    "nkplan.kernel.bpf.refusals",
]


def test_pure_bpf_modules_do_not_load_ctypes() -> None:
    code = f"import sys\nfor m in {PURE_BPF!r}: __import__(m)\nprint('ctypes' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


DIGEST = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("namespace", "device", "hook", "expected"),
    [
        ("", "nk-a", "peer", "/sys/fs/bpf/nkplan/st.1/:host/nk-a/peer/count_pass@0123456789abcdef"),
        ("pod-a", "eth0", "ingress", "/sys/fs/bpf/nkplan/st.1/pod-a/eth0/ingress/count_pass@0123456789abcdef"),
        ("pod.a", "eth0.5", "egress", "/sys/fs/bpf/nkplan/st.1/pod%2ea/eth0%2e5/egress/count_pass@0123456789abcdef"),
        ("50%.x", "e%", "primary", "/sys/fs/bpf/nkplan/st.1/50%25%2ex/e%25/primary/count_pass@0123456789abcdef"),
    ],
)
def test_link_pin_paths_round_trip(namespace: str, device: str, hook: pins.C.Hook, expected: str) -> None:
    pin = pins.link_pin("st.1", namespace, device, hook, "count_pass", DIGEST)
    assert pin.path == expected.replace("st.1", "st%2e1")
    assert "." not in pin.path.removeprefix(pins.ROOT)  # bpffs refuses dots in names
    assert pins.parse(pin.path) == pin
    assert pin.map_path("counters") == pin.path + "-maps/counters"
    assert pins.parse(pin.map_path("counters")) is None and pins.parse(pin.maps_dir) is None


def test_parse_rejects_what_is_not_a_link_pin() -> None:
    base = f"{pins.ROOT}/st/:host/nk/peer"
    assert pins.parse(f"{base}/count_pass@0123456789abcdef") is not None
    for bad in (
        f"{base}/count_pass",
        f"{base}/count_pass@xyz",
        f"{base}/@0123456789abcdef",
        f"{pins.ROOT}/st/:host/nk/sideways/p@0123456789abcdef",
        "/elsewhere/a/b/c/d/p@0123456789abcdef",
    ):
        assert pins.parse(bad) is None, bad
    with pytest.raises(ValueError):
        pins.link_pin("st", "", "a/b", "peer", "p", DIGEST)


def test_objfile_problems_and_digest(tmp_path: Path) -> None:
    assert objfile.problem(str(tmp_path / "missing.o")) == "no such file"
    assert objfile.problem(str(tmp_path)) is not None
    (tmp_path / "text.o").write_text("hello")
    assert "not an ELF" in (objfile.problem(str(tmp_path / "text.o")) or "")
    assert "another machine" in (objfile.problem(sys.executable) or "")  # an x86-64 ELF
    elf = b"\x7fELF\x02\x01\x01" + b"\0" * 11 + (247).to_bytes(2, "little") + b"\0" * 40
    (tmp_path / "bpf.o").write_bytes(elf)
    assert objfile.problem(str(tmp_path / "bpf.o")) is None
    assert len(objfile.digest(str(tmp_path / "bpf.o"))) == 64


def test_anchor_flags() -> None:
    from nkplan.kernel.bpf import consts as C
    from nkplan.kernel.bpf.mprog import Anchor

    assert (Anchor.first().flags(), Anchor.first().relative()) == (C.BPF_F_BEFORE, 0)
    assert (Anchor.last().flags(), Anchor.last().words()) == (C.BPF_F_AFTER, "last")
    a = Anchor("after", link_id=7)
    assert (a.flags(), a.relative(), a.words()) == (C.BPF_F_AFTER | C.BPF_F_LINK | C.BPF_F_ID, 7, "after link id 7")
    assert Anchor("before", prog_id=3).flags() == C.BPF_F_BEFORE | C.BPF_F_ID
    assert Anchor("before", prog_fd=5).flags() == C.BPF_F_BEFORE
    assert Anchor("before", link_fd=5).flags() == C.BPF_F_BEFORE | C.BPF_F_LINK
    with pytest.raises(ValueError):
        Anchor("before", prog_id=1, link_id=2)
