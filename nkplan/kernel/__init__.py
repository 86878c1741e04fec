"""The only code that touches the kernel. Everything above talks to it through `seam.Kernel`.

- seam.py     the protocol (read a LiveState, carry out one change)
- linux.py    LinuxKernel: seam.Kernel on the running kernel
- netlink/    rtnetlink: sockets, decoding, encoding (pyroute2 + the netkit plugin), namespaces,
              device pairs, routes, the netkit capability probe
- bpf/        bpf(): programs on tcx/netkit hooks, bpffs pins, libbpf
- libc.py     the ctypes bindings of setns/unshare/mount/umount2 (netlink/netns.py, bpf/bpffs.py)
- caps.py     this process's effective capabilities (the privilege check, the BPF probe)
- fake.py     FakeKernel: an in-memory seam.Kernel for fast planner tests (pure)
"""
