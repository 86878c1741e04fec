"""Argument parsing, printing and exit codes only; the work is in workflow.py."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from nkplan import __version__
from nkplan.errors import NkplanError, SpecError

if TYPE_CHECKING:
    from nkplan.kernel.base import Kernel
    from nkplan.plan import Operation

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2
EXIT_LOCKED, EXIT_INTERRUPTED = 4, 130

EPILOG = """exit codes:
  0    success; for plan: no changes (or changes, without --detailed-exitcode)
  1    error: invalid spec (file:line:col given), plan refused, kernel refusal, verify failed
  2    plan --detailed-exitcode: changes are pending
  4    another nkplan process holds the stack's lock
  130  interrupted (completed steps were rolled back)
"""


def _kernel() -> Kernel:
    from nkplan.kernel.netlink import NetlinkKernel

    kernel = NetlinkKernel()
    kernel.check_privileges()
    return kernel


def _confirm(args: argparse.Namespace, verb: str) -> None:
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise NkplanError(f"refusing to {verb} without confirmation: stdin is not a terminal; pass --yes")
    answer = input(f"Do you want to {verb} these changes? Only 'yes' will be accepted: ")
    if answer.strip() != "yes":
        raise NkplanError(f"{verb} cancelled")


def _progress(stage: str, op: Operation) -> None:
    verb = {"create": "created", "delete": "deleted", "update": "updated"}[op.kind]
    if stage == "undone":
        verb = f"rolled back ({op.kind})"
    print(f"  {op.address}: {verb}", flush=True)


def cmd_validate(args: argparse.Namespace) -> int:
    from nkplan.loader import load_file

    loaded = load_file(args.file)
    s = loaded.spec
    print(
        f"{args.file}: valid (stack {s.stack!r}: {len(s.namespaces)} namespaces, "
        f"{len(s.links)} links, {len(s.routes)} routes)"
    )
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    from nkplan.loader import load_file
    from nkplan.render.text import render_plan
    from nkplan.workflow import plan_for

    loaded = load_file(args.file)
    planned = plan_for(_kernel(), loaded, adopt=args.adopt)
    sys.stdout.write(render_plan(planned.plan))
    return EXIT_CHANGES if args.detailed_exitcode and planned.plan.has_changes else EXIT_OK


def _apply(args: argparse.Namespace, loaded_fn: str, verb: str) -> int:
    from nkplan.loader import load_file
    from nkplan.lock import stack_lock
    from nkplan.render.text import render_plan, summary_line
    from nkplan.workflow import apply_and_verify, empty_spec, plan_for

    loaded = empty_spec(args.stack) if loaded_fn == "" else load_file(loaded_fn)
    kernel = _kernel()
    with stack_lock(loaded.spec.stack):
        plan = plan_for(kernel, loaded, adopt=getattr(args, "adopt", False)).plan
        sys.stdout.write(render_plan(plan))
        if not plan.has_changes:
            return EXIT_OK
        _confirm(args, verb)
        apply_and_verify(kernel, loaded, plan, progress=None if args.quiet else _progress)
    print(f"{verb.capitalize()} complete! {summary_line(plan)[len('Plan: ') :]}")
    return EXIT_OK


def cmd_apply(args: argparse.Namespace) -> int:
    return _apply(args, args.file, "apply")


def cmd_destroy(args: argparse.Namespace) -> int:
    if args.file:
        from nkplan.loader import load_file

        args.stack = load_file(args.file).spec.stack
    if not args.stack:
        raise NkplanError("destroy needs a spec FILE or --stack NAME")
    return _apply(args, "", "destroy")


def cmd_show(args: argparse.Namespace) -> int:
    from nkplan.export import stack_document, to_yaml

    stack = args.stack
    if args.file:
        from nkplan.loader import load_file

        stack = load_file(args.file).spec.stack
    if not stack:
        raise NkplanError("show needs a spec FILE or --stack NAME")
    live = _kernel().read()
    sys.stdout.write(to_yaml(stack_document(live, stack)))
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nkplan",
        description="Declarative netkit/veth networking: plan and apply namespaces, device pairs, addresses, routes.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"nkplan {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)

    v = add("validate", "check a spec file (no root, no kernel access)")
    v.add_argument("file", help="spec YAML, or - for stdin")
    v.set_defaults(func=cmd_validate)

    pl = add("plan", "show what apply would change")
    pl.add_argument("file", help="spec YAML, or - for stdin")
    pl.add_argument("--adopt", action="store_true", help="take over declared objects that exist but are not owned")
    pl.add_argument("--detailed-exitcode", action="store_true", help="exit 2 when changes are pending, 0 when none")
    pl.set_defaults(func=cmd_plan)

    ap = add("apply", "make the kernel match the spec")
    ap.add_argument("file", help="spec YAML, or - for stdin")
    ap.add_argument("--adopt", action="store_true", help="take over declared objects that exist but are not owned")
    ap.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    ap.add_argument("--quiet", "-q", action="store_true", help="do not print each step as it completes")
    ap.set_defaults(func=cmd_apply)

    sh = add("show", "print the live state of a stack as a spec")
    sh.add_argument("file", nargs="?", help="spec YAML whose stack to show")
    sh.add_argument("--stack", help="stack name (instead of a file)")
    sh.set_defaults(func=cmd_show)

    de = add("destroy", "remove everything a stack owns")
    de.add_argument("file", nargs="?", help="spec YAML whose stack to destroy")
    de.add_argument("--stack", help="stack name (instead of a file)")
    de.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    de.add_argument("--quiet", "-q", action="store_true", help="do not print each step as it completes")
    de.set_defaults(func=cmd_destroy)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SpecError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        n = len(exc.problems)
        print(f"{n} problem{'s' if n != 1 else ''} found; nothing was changed.", file=sys.stderr)
        return EXIT_ERROR
    except NkplanError as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
