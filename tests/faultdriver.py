"""The process a kill -9 test kills (tests/host/test_faults.py, tests/netkit/test_faults_netkit.py):
apply a spec file, or destroy a stack, through the public API on a FaultKernel that SIGKILLs
this very process just before step K or low-level operation K (tests/faults.py). Prints how many
steps and operations it reached when it is not killed.

    python -m tests.faultdriver SPEC.yaml|destroy:STACK [--kill-step K] [--kill-op K]"""

from __future__ import annotations

import argparse

from nkplan import api
from nkplan.kernel.linux import LinuxKernel
from tests.faults import FaultKernel, Faults


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("target", help="a spec file, or destroy:STACK")
    parser.add_argument("--kill-step", type=int, default=0)
    parser.add_argument("--kill-op", type=int, default=0)
    args = parser.parse_args()
    kernel = FaultKernel(LinuxKernel(), Faults(kill_step=args.kill_step, kill_op=args.kill_op))
    if args.target.startswith("destroy:"):
        api.destroy(args.target.removeprefix("destroy:"), on=kernel)  # type: ignore[arg-type]
    else:
        api.apply(api.load_file(args.target), on=kernel)  # type: ignore[arg-type]
    print(f"steps={len(kernel.faults.steps)} ops={len(kernel.faults.ops)}")


if __name__ == "__main__":
    main()
