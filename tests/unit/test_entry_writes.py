"""kernel/bpf/values.write_entries against a map held in a dict (the syscalls replaced): sizes
checked against the map before anything is written, keys of exclusive maps deleted, and a
rollback record's keys that were absent before deleted again."""

from __future__ import annotations

import dataclasses

import pytest

from nkplan.core.records import EntryRec, HookRec, MapEntriesRec, ProgramRec
from nkplan.core.resources import programvalues
from nkplan.errors import KernelError
from nkplan.kernel.bpf import info, values
from nkplan.kernel.bpf import syscall as S


class FakeMap:
    def __init__(self, key_size: int, value_size: int, entries: dict[bytes, bytes]) -> None:
        self.key_size, self.value_size, self.entries = key_size, value_size, dict(entries)
        self.type = 1  # hash: entries go in batches
        self.batches = 0
        self.refuse: bytes | None = None  # a key the (batch) write refuses with E2BIG

    def batch(self, keys: list[bytes], values: list[bytes]) -> bool:
        assert self.type in (1, 2, 9), "a map without batch operations was sent a batch"
        self.batches += 1
        for i, (k, v) in enumerate(zip(keys, values, strict=True)):
            if k == self.refuse:
                raise S.BatchError(7, i)
            self.entries[k] = v
        return True


@pytest.fixture
def fake_map(monkeypatch: pytest.MonkeyPatch) -> FakeMap:
    m = FakeMap(4, 4, {bytes.fromhex("0a000001"): bytes.fromhex("01000000")})
    monkeypatch.setattr(info, "map_info", lambda fd: info.MapInfo(0, m.type, "allow", m.key_size, m.value_size, 16))
    monkeypatch.setattr(S, "map_update_raw", lambda fd, k, v: m.entries.__setitem__(k, v))
    monkeypatch.setattr(S, "map_update_batch", lambda fd, keys, values: m.batch(keys, values))
    monkeypatch.setattr(S, "map_delete_raw", lambda fd, k: m.entries.pop(k, None))
    monkeypatch.setattr(S, "map_keys", lambda fd, size, limit: list(m.entries))
    return m


def rec(*maps: MapEntriesRec) -> ProgramRec:
    return ProgramRec("prog", "d", map_entries=maps, entries_key="x")


def test_entries_of_the_wrong_size_are_refused_before_any_write(fake_map: FakeMap) -> None:
    before = dict(fake_map.entries)
    short = MapEntriesRec("allow", (EntryRec("0a000002", "02000000"), EntryRec("0a0003", "03000000")))
    with pytest.raises(KernelError, match=r"4-byte keys .* entry 0x0a0003 has a 3-byte key"):
        values.write_entries(rec(short), {"allow": 3}, "program prog")
    long_value = MapEntriesRec("allow", (EntryRec("0a000002", "0200000000000000"),))
    with pytest.raises(KernelError, match="8-byte value"):
        values.write_entries(rec(long_value), {"allow": 3}, "program prog")
    assert fake_map.entries == before


def test_exclusive_deletes_undeclared_keys(fake_map: FakeMap) -> None:
    values.write_entries(rec(MapEntriesRec("allow", (EntryRec("0a000002", "02000000"),), True)), {"allow": 3}, "p")
    assert fake_map.entries == {bytes.fromhex("0a000002"): bytes.fromhex("02000000")}


def test_a_rollback_deletes_the_declared_keys_that_were_absent(fake_map: FakeMap) -> None:
    """Not exclusive: the apply adds key 0a000002 and changes 0a000001; the rollback's record (the
    live view before) holds 0a000001's old value and lists 0a000002 as absent; a key nobody
    declared (0a000009, the datapath's) stays throughout."""
    fake_map.entries[bytes.fromhex("0a000009")] = bytes.fromhex("09000000")
    declared = MapEntriesRec("allow", (EntryRec("0a000001", "05000000"), EntryRec("0a000002", "02000000")))
    live = MapEntriesRec("allow", tuple(EntryRec(k.hex(), v.hex()) for k, v in sorted(fake_map.entries.items())))
    want = HookRec("", "d", "tcx/ingress", (rec(declared),))
    have = HookRec("", "d", "tcx/ingress", (ProgramRec("prog", "d", map_entries=(live,)),))
    before = programvalues.view(want, have).programs[0]
    assert before.map_entries[0].absent == ("0a000002",)
    plain = programvalues.program_from_plain(dataclasses.asdict(before))
    assert plain.map_entries == before.map_entries and plain.map_entries[0].absent == ("0a000002",)
    values.write_entries(rec(declared), {"allow": 3}, "p")  # the apply
    assert fake_map.entries[bytes.fromhex("0a000002")] == bytes.fromhex("02000000")
    values.write_entries(plain, {"allow": 3}, "p")  # its rollback
    assert fake_map.entries == {
        bytes.fromhex("0a000001"): bytes.fromhex("01000000"),
        bytes.fromhex("0a000009"): bytes.fromhex("09000000"),
    }


def test_a_hash_map_takes_one_batch_and_an_lpm_trie_one_write_per_entry(fake_map: FakeMap) -> None:
    two = MapEntriesRec("allow", (EntryRec("0a000002", "02000000"), EntryRec("0a000003", "03000000")))
    values.write_entries(rec(two), {"allow": 3}, "p")
    assert fake_map.batches == 1 and len(fake_map.entries) == 3
    fake_map.type = 11  # LPM trie: the fake refuses a batch (an assertion), the writes go one by one
    values.write_entries(
        rec(MapEntriesRec("allow", (EntryRec("0a000004", "04000000"),) + two.entries)), {"allow": 3}, "p"
    )
    assert fake_map.batches == 1 and bytes.fromhex("0a000004") in fake_map.entries


def test_a_batch_refused_midway_names_the_entry(fake_map: FakeMap) -> None:
    fake_map.refuse = bytes.fromhex("0a000003")
    entries = (EntryRec("0a000002", "02000000", "10.0.0.2"), EntryRec("0a000003", "03000000", "10.0.0.3"))
    with pytest.raises(
        KernelError, match=r"writing entry 10.0.0.3 of map allow \(after 1 of 2\): Argument list too long"
    ):
        values.write_entries(rec(MapEntriesRec("allow", entries)), {"allow": 3}, "p")
