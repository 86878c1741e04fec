"""Per-device sysctls on the host kernel (veth), through the real `nkplan` command: applied,
re-planned to no changes, changed by hand (drift), put back, changed in the spec (in place),
left alone when no longer declared, destroyed; a value the kernel refuses; and the reader's
table checked key by key against /proc/sys. The kernel is read with /proc/sys (from inside the
namespace, with `ip netns exec`), never with nkplan's reader."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from nkplan.core.sysctls import DEVICE_KEYS, dump_value
from nkplan.kernel.netlink import consts as C
from nkplan.kernel.netlink import decode
from nkplan.kernel.netlink.nlsock import RtnlSocket
from nkplan.kernel.netlink.reader import _LINK_DUMP
from tests.host.test_cli_veth import Names, exists, link, names, netns, run, write
from tests.realkernel import host_snapshot

__all__ = ["names"]
pytestmark = pytest.mark.host


def proc(key: str, dev: str, ns: str | None = None) -> int:
    family, _, name = key.partition(".")
    path = f"/proc/sys/net/{family}/conf/{dev}/{name}"
    cmd = ["ip", "netns", "exec", ns, "cat", path] if ns else ["cat", path]
    return int(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def set_by_hand(key: str, dev: str, value: int, ns: str | None = None) -> None:
    family, _, name = key.partition(".")
    cmd = ["sysctl", "-q", "-w", f"net.{family}.conf.{dev}.{name}={value}"]
    subprocess.run(["ip", "netns", "exec", ns, *cmd] if ns else cmd, check=True)


def spec(n: Names, host_end: str, peer_end: str) -> str:
    return textwrap.dedent(f"""\
        stack: {n.stack}
        namespaces: [{{name: {n.pa}}}]
        links:
          - name: {n.va}
            kind: veth
            addresses: [10.233.0.1/32]
            sysctls: {{{host_end}}}
            peer: {{name: eth0, namespace: {n.pa}, addresses: [10.233.1.2/32], sysctls: {{{peer_end}}}}}
        """)


def test_device_sysctls_lifecycle(names: Names, tmp_path: Path) -> None:
    n = names
    declared = "ipv4.rp_filter: 2, ipv4.forwarding: 1, ipv6.disable_ipv6: 1"
    path = write(tmp_path, spec(n, declared, "ipv4.proxy_arp: 1, ipv4.arp_ignore: 2"))
    out = run("apply", path, "--yes").stdout
    assert "Apply complete!" in out, out
    assert [proc(k, n.va) for k in ("ipv4.rp_filter", "ipv4.forwarding", "ipv6.disable_ipv6")] == [2, 1, 1]
    assert (proc("ipv4.proxy_arp", "eth0", n.pa), proc("ipv4.arp_ignore", "eth0", n.pa)) == (1, 2)
    assert "No changes" in run("plan", path, "--detailed-exitcode").stdout

    # drift: changed by hand, shown as such, put back by apply
    set_by_hand("ipv4.rp_filter", n.va, 0)
    set_by_hand("ipv4.proxy_arp", "eth0", 0, n.pa)
    doc = json.loads(run("plan", path, "--format", "json").stdout)
    (drift,) = doc["resource_drift"]
    assert drift["address"] == f"link[{n.va}]"
    assert drift["change"]["before"]["primary"]["sysctls"]["ipv4.rp_filter"] == 2  # as applied
    assert drift["change"]["after"]["primary"]["sysctls"]["ipv4.rp_filter"] == 0  # as found
    text = run("plan", path).stdout
    assert "changed outside nkplan" in text and "sysctls" in text, text
    index = link(n.va)["ifindex"]
    run("apply", path, "--yes")
    assert (proc("ipv4.rp_filter", n.va), proc("ipv4.proxy_arp", "eth0", n.pa)) == (2, 1)

    # a spec change is an update in place (same device); a key no longer declared is left alone
    path = write(tmp_path, spec(n, "ipv4.rp_filter: 1, ipv4.forwarding: 1", "ipv4.proxy_arp: 1"))
    text = run("plan", path).stdout
    assert f"~ link[{n.va}]" in text and '"ipv4.rp_filter": 2' in text and '"ipv4.rp_filter": 1' in text, text
    run("apply", path, "--yes")
    assert link(n.va)["ifindex"] == index
    assert proc("ipv4.rp_filter", n.va) == 1
    assert proc("ipv6.disable_ipv6", n.va) == 1 and proc("ipv4.arp_ignore", "eth0", n.pa) == 2  # untouched
    assert "No changes" in run("plan", path, "--detailed-exitcode").stdout

    run("destroy", "--stack", n.stack, "--yes")
    assert not exists(n.va)


def test_a_value_the_kernel_refuses_is_an_error_in_words_and_nothing_stays(names: Names, tmp_path: Path) -> None:
    n = names
    # the kernel's range for a device's IPv6 MTU starts at 1280 (rp_filter, by contrast, takes any int)
    path = write(tmp_path, spec(n, "ipv6.mtu: 1000", "ipv4.forwarding: 1"))
    before = host_snapshot()
    proc_ = run("apply", path, "--yes", check=1)
    assert f"setting net.ipv6.conf.{n.va}.mtu = 1000 in host namespace" in proc_.stderr, proc_.stderr
    assert "the kernel refused it (Invalid argument)" in proc_.stderr and "Traceback" not in proc_.stderr
    assert not exists(n.va) and host_snapshot() == before  # rolled back


def test_the_key_table_matches_proc_sys() -> None:
    """Every key nkplan knows reads the same from the link dump (at its position in the conf
    array) as from /proc/sys, on the host's lo; and every integer file /proc/sys has for a
    device is a key of the table or one the table leaves out on purpose."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with RtnlSocket(strict=True) as sock:
        lo = next(
            d
            for t, data, s, e in sock.dump(C.RTM_GETLINK, _LINK_DUMP)
            if t == C.RTM_NEWLINK and (d := decode.link(data, s, e, with_af=True)).name == "lo"
        )
    assert lo.af_spec is not None
    conf = decode.device_conf(lo.af_spec)
    checked = 0
    for key, (family, pos) in DEVICE_KEYS.items():
        family_, _, name = key.partition(".")
        file = Path(f"/proc/sys/net/{family_}/conf/lo/{name}")
        if pos >= len(conf[family]):
            assert not file.exists(), f"{key}: /proc/sys has it but the dump does not"
            continue
        if not file.exists():  # compiled out of this kernel (e.g. CONFIG_IPV6_SEG6_HMAC)
            continue
        assert int(file.read_text()) == dump_value(key, conf[family][pos]), key
        checked += 1
    assert checked >= 80, checked
    left_out = {
        "ipv6.router_solicitation_interval",  # seconds in /proc/sys, milliseconds in the dump
        "ipv6.router_solicitation_delay",
        "ipv6.router_solicitation_max_interval",
        "ipv6.router_probe_interval",
        "ipv6.stable_secret",  # not an integer
        # not in the dump's conf array (newer keys): not offered yet
        "ipv6.ra_honor_pio_life",
        "ipv6.ra_honor_pio_pflag",
        "ipv6.regen_min_advance",
    }
    for family in ("ipv4", "ipv6"):
        for file in Path(f"/proc/sys/net/{family}/conf/lo").iterdir():
            key = f"{family}.{file.name}"
            if key in DEVICE_KEYS or key in left_out:
                continue
            pytest.fail(f"/proc/sys/net/{family}/conf/lo/{file.name} is not in the key table")


def ns_spec(n: Names, ns_values: str, host_values: str) -> str:
    return textwrap.dedent(f"""\
        stack: {n.stack}
        namespaces: [{{name: {n.pa}, sysctls: {{{ns_values}}}}}]
        host: {{sysctls: {{{host_values}}}}}
        links:
          - name: {n.va}
            kind: veth
            peer: {{name: eth0, namespace: {n.pa}, addresses: [10.233.1.2/32]}}
        """)


def net(key: str, ns: str | None = None) -> str:
    path = "/proc/sys/" + key.replace(".", "/")
    cmd = ["ip", "netns", "exec", ns, "cat", path] if ns else ["cat", path]
    return " ".join(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split())


def test_namespace_and_host_sysctls_lifecycle(names: Names, tmp_path: Path) -> None:
    """A namespace's net.* keys (forwarding on, strict rp_filter for all, a device key of the pod
    end, a two-number key) and a host key of this test's own host end (the host's global keys are
    the machine's: a test must not change them)."""
    n = names
    ns_values = (
        "net.ipv4.ip_forward: 1, net.ipv4.conf.all.rp_filter: 1, net.ipv4.conf.eth0.arp_ignore: 2, "
        "net.ipv4.ip_local_port_range: '20000 30000'"
    )
    host_key = f"net.ipv4.conf.{n.va}.rp_filter"
    path = write(tmp_path, ns_spec(n, ns_values, f"{host_key}: 2"))
    run("apply", path, "--yes")
    assert [net(k, n.pa) for k in ("net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter")] == ["1", "1"]
    assert net("net.ipv4.conf.eth0.arp_ignore", n.pa) == "2"
    assert net("net.ipv4.ip_local_port_range", n.pa) == "20000 30000"
    assert net(host_key) == "2"
    assert "No changes" in run("plan", path, "--detailed-exitcode").stdout
    # `show FILE` exports the keys FILE declares, and the export plans to no changes
    shown = run("show", path).stdout
    assert "net.ipv4.ip_local_port_range: 20000 30000" in shown and f"{host_key}: 2" in shown, shown
    assert "No changes" in run("plan", write(tmp_path, shown, "shown.yaml"), "--detailed-exitcode").stdout

    # by hand: in the namespace it is drift; in the host (no place for a mark) a plain update
    subprocess.run(["ip", "netns", "exec", n.pa, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0"], check=True)
    subprocess.run(["sysctl", "-q", "-w", f"{host_key.replace('/', '.')}=0"], check=True)
    doc = json.loads(run("plan", path, "--format", "json").stdout)
    assert [d["address"] for d in doc["resource_drift"]] == [f"sysctls[{n.pa}]"]
    changed = {c["address"]: c["change"]["actions"] for c in doc["resource_changes"]}
    changed = {a: acts for a, acts in changed.items() if acts != ["no-op"]}
    assert changed == {f"sysctls[{n.pa}]": ["update"], "sysctls[host]": ["update"]}, changed
    run("apply", path, "--yes")
    assert (net("net.ipv4.ip_forward", n.pa), net(host_key)) == ("1", "2")

    # a key that does not exist: a plan error at its position, nothing changed
    bad = write(tmp_path, ns_spec(n, ns_values + ", net.ipv4.no_such_key: 1", f"{host_key}: 2"))
    proc_ = run("plan", bad, check=1)
    assert "has no readable sysctl net.ipv4.no_such_key" in proc_.stderr, proc_.stderr
    assert "spec.yaml:2:" in proc_.stderr, proc_.stderr
    # a write-only key exists but could never be read back: refused the same way, for a namespace
    # that exists and for the host
    bad = write(tmp_path, ns_spec(n, ns_values + ", net.ipv4.route.flush: 1", "net.ipv4.route.flush: 1"))
    proc_ = run("plan", bad, check=1)
    assert proc_.stderr.count("has no readable sysctl net.ipv4.route.flush") == 2, proc_.stderr

    run("destroy", "--stack", n.stack, "--yes")
    assert not exists(n.va) and n.pa not in netns()


def counters(ns: str, table: str, prefix: str) -> dict[str, int]:
    """One group of a namespace's /proc/net/snmp or /proc/net/netstat counters."""
    text = subprocess.run(["ip", "netns", "exec", ns, "cat", f"/proc/net/{table}"], capture_output=True, text=True)
    heads, values = [line.split()[1:] for line in text.stdout.splitlines() if line.startswith(prefix + ":")]
    return dict(zip(heads, map(int, values), strict=True))


def test_rp_filter_strict_drops_a_spoofed_source_and_0_lets_it_through(names: Names, tmp_path: Path) -> None:
    """The receiving end (the pair's primary, in namespace pb: a stand-in for the host end, whose
    `all` value the machine owns) with rp_filter 1 drops an echo request from a source it has no
    route back to; with 0 it takes it. Counted by the receiver's own kernel counters."""
    n = names

    def spec_(rp_filter: int) -> str:
        return textwrap.dedent(f"""\
            stack: {n.stack}
            namespaces:
              - {{name: {n.pa}}}
              - {{name: {n.pb}, sysctls: {{net.ipv4.conf.all.rp_filter: 0}}}}
            links:
              - name: b0
                namespace: {n.pb}
                kind: veth
                addresses: [10.88.0.2/24]
                sysctls: {{ipv4.rp_filter: {rp_filter}}}
                # arp_announce 2: ask for b0's MAC from 10.88.0.1 (rp_filter checks ARP senders too)
                peer: {{name: a0, namespace: {n.pa}, addresses: [10.88.0.1/24, 10.99.9.9/32],
                        sysctls: {{ipv4.arp_announce: 2}}}}
            """)

    def spoofed_echoes() -> tuple[int, int]:
        before = counters(n.pb, "snmp", "Icmp")["InEchos"], counters(n.pb, "netstat", "TcpExt")["IPReversePathFilter"]
        ping = ["ip", "netns", "exec", n.pa, "ping", "-c", "3", "-i", "0.05", "-W", "1", "-I", "10.99.9.9", "10.88.0.2"]
        subprocess.run(ping, capture_output=True)  # no reply either way: pb has no route to 10.99.9.9
        after = counters(n.pb, "snmp", "Icmp")["InEchos"], counters(n.pb, "netstat", "TcpExt")["IPReversePathFilter"]
        return after[0] - before[0], after[1] - before[1]

    run("apply", write(tmp_path, spec_(1)), "--yes")
    assert proc("ipv4.rp_filter", "b0", n.pb) == 1
    taken, dropped = spoofed_echoes()
    assert taken == 0 and dropped >= 3, (taken, dropped)
    run("apply", write(tmp_path, spec_(0)), "--yes")
    assert proc("ipv4.rp_filter", "b0", n.pb) == 0
    taken, dropped = spoofed_echoes()
    assert taken == 3 and dropped == 0, (taken, dropped)
