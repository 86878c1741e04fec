"""BPF programs on tcx and netkit hooks: the kernel-facing half.

Modules (ctypes only in the kernel-facing ones; the pure layers import none of them: the object
file checks they need are nkplan/spec/objfile.py):

- consts    (pure) bpf() numbers, hook names → attach types
- pins      (pure) the bpffs pin layout: path ↔ (stack, namespace, device, hook, program, digest)
- errors    (pure) BpfObjectError, ProgramLoadError, StaleHookError
- refusals  (pure) bpf() errnos in words
- syscall   raw bpf(2): union bpf_attr packing, OBJ_PIN/OBJ_GET, *_GET_FD_BY_ID, info, lookups
- info      program/link/map info records; MAP_LOOKUP_ELEM; open by id
- mprog     LINK_CREATE (anchors, expected_revision), LINK_UPDATE, LINK_DETACH, PROG_QUERY
- libbpf    libbpf.so.1: open an object, load a program (as SCHED_CLS), program and map fds
- bpffs     mount bpffs, pin / open / unpin; the one walk of the pin tree (hook directories,
            the link pins in each)
- hooks     the operations on a device's hook in a named namespace, with errors in words
- probe     what this machine lacks for BPF on tcx/netkit hooks (plan-time capability errors)
- scan      reading: the programs at the hooks of owned devices (matched to their pins); pins of
            deleted devices
- hookwriter  writing: make one hook run exactly the declared programs, in order

This package file imports nothing, so importing a pure module does not load ctypes."""
