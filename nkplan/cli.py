"""Argument parsing, printing and exit codes only; the work is in run/workflow.py (through nkplan.api where it fits)."""

from __future__ import annotations

if __name__ == "__main__":  # `python -m nkplan.cli`: note signals from here on, as the entry point does
    from nkplan.entry import collect_young_only, note_early_signals

    note_early_signals()
    collect_young_only()

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from nkplan import __version__
from nkplan.errors import Interrupted, NkplanError, SpecError

if TYPE_CHECKING:
    from nkplan.core.plan import Operation, Plan
    from nkplan.core.records import LiveState
    from nkplan.documents.signing import PlanKey
    from nkplan.run.confirm import Pending
    from nkplan.spec.loader import Loaded

EXIT_OK, EXIT_ERROR, EXIT_CHANGES, EXIT_STALE, EXIT_LOCKED, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130

EPILOG = """exit codes:
  0    success; for plan: no changes (or changes, without --detailed-exitcode)
  1    error: invalid spec (file:line:col given), plan refused, kernel refusal (steps rolled back),
       verification failed, a reachability check failed (apply: rolled back unless
       --keep-on-check-failure), apply --confirm-within not confirmed in time (reverted),
       unreadable or modified plan file, a saved plan unsigned or wrongly signed while a
       verification key is configured (--verify-key), missing privileges
  2    plan --detailed-exitcode: changes are pending
  3    apply PLAN.json: the live state (or host, or kernel) changed since the plan was made
  4    another nkplan process holds the stack's lock (after --lock-timeout, if given; the
       message names its pid and command), or the stack waits for the confirmation
       of an `apply --confirm-within` (`nkplan confirm STACK`)
  130  interrupted (completed steps were rolled back)
"""


def _colour(args: argparse.Namespace) -> bool:
    """Colour only on a terminal, never with NO_COLOR (https://no-color.org) or --no-color."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR") and not getattr(args, "no_color", False)


def _confirm(args: argparse.Namespace, verb: str) -> None:
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise NkplanError(f"refusing to {verb} without confirmation: stdin is not a terminal; pass --yes")
    answer = input(f"Do you want to {verb} these changes? Only 'yes' will be accepted: ")
    if answer.strip() != "yes":
        raise NkplanError(f"{verb} cancelled")


def _progress(stage: str, op: Operation) -> None:
    from nkplan.core.actions import DONE

    verb = DONE[op.kind]
    if stage == "undone":
        verb = f"rolled back ({op.kind})"
    print(f"  {op.address}: {verb}", flush=True)


def _render(plan: Plan, fmt: str, colour: bool) -> str:
    if fmt == "json":
        from nkplan.documents.json_plan import render_json

        return render_json(plan)
    if fmt == "markdown":
        from nkplan.documents.markdown import render_markdown

        return render_markdown(plan)
    from nkplan.documents.text import render_plan

    return render_plan(plan, colour=colour)


def cmd_validate(args: argparse.Namespace) -> int:
    from nkplan.api import load_file

    if _is_dir(args):
        from nkplan.cli_dirs import validate_dir

        return validate_dir(args)
    loaded = load_file(args.file)
    s = loaded.spec
    if args.expanded:
        # through JSON: items a template shares between instances are written out, not YAML anchors
        doc = json.loads(json.dumps(loaded.expanded if loaded.expanded is not None else {"stack": s.stack}))
        if args.format == "json":
            sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        else:
            from nkplan.documents.show import to_yaml

            sys.stdout.write(to_yaml(doc))
        return EXIT_OK
    print(
        f"{loaded.source.filename}: valid (stack {s.stack!r}: {len(s.namespaces)} namespaces, "
        f"{len(s.links)} links, {len(s.routes)} routes, {len(s.rules)} rules)"
    )
    return EXIT_OK


def _observe(args: argparse.Namespace, plan: Plan | None = None, stack: str | None = None) -> None:
    """Tell --metrics-file what the command saw (run/metrics.py)."""
    run = getattr(args, "metrics_run", None)
    if run is not None:
        if stack is not None:
            run.stack = stack
        if plan is not None:
            run.observe(plan)


def _is_dir(args: argparse.Namespace) -> bool:
    """A directory of stack files (cli_dirs.py) instead of one spec file."""
    return bool(args.file) and args.file != "-" and os.path.isdir(args.file)


def _sign_key(args: argparse.Namespace) -> PlanKey | None:
    """--sign-key (or NKPLAN_PLAN_KEY) signs what --out writes (documents/signing.py)."""
    if args.sign_key and not args.out:
        raise NkplanError("--sign-key signs a saved plan: give --out PLAN.json too")
    if not args.out:
        return None
    from nkplan.documents import signing

    return signing.configured_key(args.sign_key, signing.SIGN_ENV)


def cmd_plan(args: argparse.Namespace) -> int:
    from nkplan import api

    key = _sign_key(args)
    if _is_dir(args):
        from nkplan.cli_dirs import plan_dir

        return plan_dir(args)

    if args.state and os.path.isdir(args.state):
        return _plan_fleet(args, key)
    loaded = api.load_file(args.file)
    _observe(args, stack=loaded.spec.stack)
    planned = api.plan(loaded, adopt=args.adopt, snapshot=args.state)
    _observe(args, planned.plan)
    if args.out:
        from nkplan.documents.savedplan import write_saved

        write_saved(planned.plan, loaded, args.out, key)
    sys.stdout.write(_render(planned.plan, args.format, _colour(args)))
    if args.out and args.format == "text":
        print(f"Saved the plan to {args.out}; apply exactly these steps with: nkplan apply {args.out}")
    return EXIT_CHANGES if args.detailed_exitcode and planned.plan.has_changes else EXIT_OK


def _plan_fleet(args: argparse.Namespace, key: PlanKey | None) -> int:
    """plan SPEC --state SNAPDIR: the fleet review (run/fleet.py, documents/fleet.py)."""
    from nkplan.documents.fleet import render_fleet_json, render_fleet_markdown, render_fleet_text
    from nkplan.run.fleet import hosts, plan_fleet
    from nkplan.run.many import worst

    if args.metrics_file or args.adopt:
        raise NkplanError("plan --state DIR (a fleet) takes neither --metrics-file nor --adopt")
    members = hosts(args.file, args.state)
    tty = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if tty and (done == total or done % 50 == 0):
            print(f"\rplanned {done}/{total} hosts", end="\n" if done == total else "", file=sys.stderr, flush=True)

    results = plan_fleet(
        members,
        out_dir=args.out,
        detailed=args.detailed_exitcode,
        documents=args.format == "json",
        progress=progress,
        key=key,
    )
    code = worst([r.code for r in results])
    if args.format == "json":
        sys.stdout.write(render_fleet_json(args.file, args.state, results, code))
    elif args.format == "markdown":
        sys.stdout.write(render_fleet_markdown(args.file, results))
    else:
        sys.stdout.write(render_fleet_text(args.file, args.state, results))
        if args.out:
            print(f"Saved each host's plan to {args.out}/HOST.json; on each host: nkplan apply HOST.json")
    return code


def _execute(args: argparse.Namespace, loaded: Loaded, verb: str, saved: Plan | None = None) -> int:
    from nkplan import api
    from nkplan.core.reach import ChecksFailed
    from nkplan.documents.text import render_plan, summary_line

    _observe(args, stack=loaded.spec.stack)

    def review(plan: Plan) -> None:
        _observe(args, plan)
        sys.stdout.write(render_plan(plan, colour=_colour(args)))
        if plan.has_changes and saved is None:
            _confirm(args, verb)  # a saved plan is the approval

    within = getattr(args, "confirm_within", None)
    pending: Pending | None = None

    def keep_revert(plan: Plan, live: LiveState) -> None:
        nonlocal pending
        from nkplan.run import confirm

        assert within is not None
        if plan.meta.get("adopt"):  # the revert would delete what the apply adopted: made by hand
            raise NkplanError(
                "--confirm-within cannot be combined with adopting (the revert would delete the adopted "
                "objects, which were there before): adopt first, then change with --confirm-within"
            )
        doc = api.revert_document(live, loaded)
        pending = confirm.start(loaded.spec.stack, doc, within, loaded.source.filename, confirm.marks_of(plan))

    def waiting(why: str) -> str:
        assert pending is not None
        return (
            f"{why}; the change waits for confirmation: the watcher (pid {pending.pid}) reverts it unless "
            f"`nkplan confirm {loaded.spec.stack}` comes within {pending.within:g} s"
        )

    keep = getattr(args, "keep_on_check_failure", False)
    try:
        done = api.apply(
            loaded,
            adopt=getattr(args, "adopt", False),
            saved=saved,
            review=review,
            progress=None if args.quiet else _progress,
            keep_on_check_failure=keep,
            before_change=keep_revert if within is not None else None,
            lock_timeout=getattr(args, "lock_timeout", None) or 0.0,
        )
    except ChecksFailed as exc:
        if pending is not None and keep:  # the change stayed: it still needs confirming
            _await_confirmation(pending, pending.applied())
        elif pending is not None:
            pending.aborted(f"apply failed and rolled back: {exc}")
        raise
    except Interrupted as exc:  # after the change was complete: it is kept (api.apply)
        if pending is not None:
            pending.applied()
            raise Interrupted(waiting(str(exc))) from None
        raise
    except BaseException as exc:
        if pending is not None:
            pending.aborted(f"apply failed and rolled back: {exc or type(exc).__name__}")
        raise
    deadline = pending.applied() if pending is not None else 0.0  # the clock runs from here
    try:
        if done.has_changes:
            print(f"{verb.capitalize()} complete! {summary_line(done)[len('Plan: ') :]}")
        _checks_passed(loaded)
        if pending is not None:
            return _await_confirmation(pending, deadline)
        if within is not None:
            print("Nothing was changed: nothing to confirm.")
        return EXIT_OK
    except KeyboardInterrupt as exc:
        by = f" by {exc.args[0]}" if exc.args else ""
        if pending is not None:
            raise Interrupted(waiting(f"interrupted{by} after the {verb}")) from None
        raise Interrupted(f"interrupted{by} after the {verb}: the {verb} had completed and is kept") from None


def _await_confirmation(pending: Pending, deadline: float) -> int:
    """Wait for Enter (on a terminal), `nkplan confirm STACK`, or the watcher's revert."""
    import select

    from nkplan.run import confirm

    stack, files = pending.files.stack, pending.files
    tty = sys.stdin.isatty()
    how = "press Enter here or run" if tty else "run"
    print(
        f"Confirm within {pending.within:g} s to keep this change: {how} `nkplan confirm {stack}`. "
        f"Otherwise it is reverted (watcher pid {pending.pid}, log {files.log}).",
        flush=True,
    )
    while True:
        state = confirm.read_state(files)
        if state.get("phase") in confirm.FINAL or confirm.watcher_pid(stack) is None:
            break
        if tty:
            ready, _, _ = select.select([sys.stdin], [], [], confirm.POLL)
            if ready:
                if sys.stdin.readline():
                    files.confirm.touch()
                else:
                    tty = False  # stdin closed: the watcher still decides
        else:
            time.sleep(confirm.POLL)
        if confirm.clock() > deadline + 600:  # the watcher should have ended long ago
            break
    state = pending.wait_end(5.0)
    phase = state.get("phase")
    if phase == confirm.CONFIRMED:
        print("Confirmed: the change is kept.")
        return EXIT_OK
    if phase == confirm.REVERTED:
        raise NkplanError(f"{state.get('outcome', 'not confirmed')}: reverted to the state before the apply")
    if phase == confirm.REVERT_FAILED:
        raise NkplanError(f"{state.get('outcome')} (see {files.log})")
    raise NkplanError(f"the confirm-or-revert watcher ended without a result (phase {phase!r}); see {files.log}")


def _checks_passed(loaded: Loaded) -> None:
    n = len(loaded.spec.checks)
    if n:
        print(f"Checks passed: {n} of {n}.")


def cmd_check(args: argparse.Namespace) -> int:
    """Run the spec's reachability checks against the kernel as it is; exit 1 if one fails."""
    from nkplan import api

    loaded = api.load_file(args.file)
    results = api.check(loaded)
    if not results:
        print(f"{loaded.source.filename}: no checks declared")
        return EXIT_OK
    failed = 0
    for r in results:
        failed += not r.passed
        if not (args.quiet and r.passed):
            print(f"  {'ok  ' if r.passed else 'FAIL'} {r}")
    print(f"Checks: {len(results) - failed} passed, {failed} failed.")
    return EXIT_ERROR if failed else EXIT_OK


def cmd_apply(args: argparse.Namespace) -> int:
    from nkplan import api
    from nkplan.documents.savedplan import is_saved_plan

    if args.verify_key and not is_saved_plan(args.file):
        raise NkplanError(f"--verify-key checks a saved plan (`nkplan plan --out`); {args.file} is not one")
    if _is_dir(args):
        from nkplan.cli_dirs import execute_dir

        if args.confirm_within is not None:
            raise NkplanError("--confirm-within keeps one stack's revert: run it on each stack file on its own")
        return execute_dir(args, "apply")
    if is_saved_plan(args.file):
        from nkplan.documents import signing

        if args.adopt:
            raise NkplanError("--adopt is decided when the plan is made: pass it to `nkplan plan --out`")
        verify_key = signing.configured_key(args.verify_key, signing.VERIFY_ENV)
        saved, loaded = api.read_plan(args.file, verify_key)
        note = saved.meta["signature"].note(args.file)
        if note:  # a signature is never ignored silently: say whether it was checked
            print(("" if verify_key else "warning: ") + note, file=sys.stderr)
        return _execute(args, loaded, "apply", saved)
    return _execute(args, api.load_file(args.file), "apply")


def _stack_of(args: argparse.Namespace, verb: str) -> str:
    if args.file:
        from nkplan.api import load_file

        return load_file(args.file).spec.stack
    if not args.stack:
        raise NkplanError(f"{verb} needs a spec FILE or --stack NAME")
    return str(args.stack)


def _seconds_between(low: float, high: float = 86400) -> Callable[[str], float]:
    """An argparse type: a number of seconds in [low, high]."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g} seconds: {text}")
        return value

    return parse


_seconds = _seconds_between(1)  # --confirm-within: a revert needs some time to be confirmed in
_wait_seconds = _seconds_between(0)  # --lock-timeout: 0 waits not at all, as without it


def cmd_confirm(args: argparse.Namespace) -> int:
    from nkplan.run import confirm

    state = confirm.confirm(args.stack)
    if state.get("phase") != confirm.CONFIRMED:
        raise NkplanError(f"the confirmation of stack {args.stack!r} did not take: {state.get('outcome', '?')}")
    print(f"Confirmed: stack {args.stack!r} keeps the change.")
    return EXIT_OK


def cmd_install_units(args: argparse.Namespace) -> int:
    from nkplan.run import units

    done = units.install(args.dir)
    for item in done:
        print(f"{'wrote' if item.changed else 'unchanged'} {item.path}")
    if args.dir == units.DEFAULT_DIR:
        print(
            "Next: put a spec at /etc/nkplan/NAME.yaml, then\n"
            "  systemctl daemon-reload\n"
            "  systemctl enable --now nkplan@NAME.service          # apply at every boot\n"
            "  systemctl enable --now nkplan-drift@NAME.timer      # drift check every 15 min"
        )
    return EXIT_OK


def cmd_drift(args: argparse.Namespace) -> int:
    """A scheduled plan: print what differs, exit 2 when something does; --converge applies it."""
    from nkplan import api
    from nkplan.documents.text import render_plan

    if _is_dir(args):
        raise NkplanError("drift takes one stack file (a unit per stack); for a directory use `nkplan plan DIR`")
    loaded = api.load_file(args.file)
    stack = loaded.spec.stack
    _observe(args, stack=stack)
    plan = api.plan(loaded).plan
    _observe(args, plan)
    if not plan.has_changes:
        print(f"stack {stack!r}: no drift: the kernel holds what {loaded.source.filename} declares")
        return EXIT_OK
    sys.stdout.write(render_plan(plan, colour=False))
    pending = sum(1 for c in plan.changes if c.action != "no-op")
    print(
        f"drift: stack {stack!r} differs from {loaded.source.filename}: {pending} change(s) pending, "
        f"{len(plan.drift)} of them made outside nkplan"
    )
    if not args.converge:
        return EXIT_CHANGES
    print(f"converging stack {stack!r} (--converge)")
    args.yes, args.quiet = True, False
    if getattr(args, "metrics_run", None) is not None:
        args.metrics_run.applying = True
    return _execute(args, loaded, "apply")


def cmd_destroy(args: argparse.Namespace) -> int:
    from nkplan.run.workflow import empty_spec

    if _is_dir(args):
        from nkplan.cli_dirs import execute_dir

        return execute_dir(args, "destroy")
    return _execute(args, empty_spec(_stack_of(args, "destroy")), "destroy")


def cmd_show(args: argparse.Namespace) -> int:
    from nkplan import api
    from nkplan.documents.show import to_yaml

    loaded = api.load_file(args.file) if args.file else None
    stack = loaded.spec.stack if loaded is not None else _stack_of(args, "show")
    shown = api.show(stack, spec=loaded, unowned=args.all)
    doc = shown.document
    if args.format == "json":
        from nkplan.documents import snapshot
        from nkplan.run.identity import host_identity

        doc[snapshot.SNAPSHOT_KEY] = snapshot.to_json(shown.live, host_identity())
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        sys.stdout.write(to_yaml(doc))
    return EXIT_OK


def cmd_stacks(args: argparse.Namespace) -> int:
    from nkplan import api
    from nkplan.documents.stacks import render_json, render_text

    rows = api.stacks()
    sys.stdout.write(render_json(rows) if args.format == "json" else render_text(rows))
    return EXIT_OK


def cmd_graph(args: argparse.Namespace) -> int:
    from nkplan import api
    from nkplan.run import pictures

    if args.file:
        loaded = api.load_file(args.file)
        pic = pictures.of_plan(api.kernel(), loaded) if args.plan else pictures.of_spec(loaded)
    elif args.stack:
        if args.plan:
            raise NkplanError("graph --plan needs a spec FILE (a plan is the spec against the kernel)")
        pic = pictures.of_stack(api.kernel(), args.stack)
    else:
        raise NkplanError("graph needs a spec FILE or --stack NAME")
    data = pictures.render(pic, args.format)
    if args.out:
        try:
            with open(args.out, "wb") as f:
                f.write(data)
        except OSError as exc:
            raise NkplanError(f"cannot write the picture to {args.out}: {exc.strerror}") from None
    else:
        sys.stdout.buffer.write(data)
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    if args.plan:
        from nkplan.documents.json_plan import plan_schema

        schema = plan_schema()
    else:
        from nkplan.spec.schema import spec_schema

        schema = spec_schema()
    sys.stdout.write(json.dumps(schema, indent=2) + "\n")
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

    def spec_arg(cmd: argparse.ArgumentParser, optional: bool = False, dirs: bool = False) -> None:
        more = " (or a directory of stack files)" if dirs else ""
        if optional:
            cmd.add_argument("file", nargs="?", help="spec YAML whose stack to use" + more)
            cmd.add_argument("--stack", help="stack name (instead of a file)")
        else:
            cmd.add_argument("file", help="spec YAML, or - for stdin" + more)

    def no_color(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument("--no-color", action="store_true", help="no colour (also: NO_COLOR set, or not a terminal)")

    def metrics_file(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument(
            "--metrics-file",
            metavar="PATH",
            help="write the outcome as Prometheus metrics for node_exporter's textfile collector (atomically)",
        )

    def lock_timeout(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument(
            "--lock-timeout",
            type=_wait_seconds,
            metavar="SECONDS",
            help="wait up to SECONDS for another nkplan process to release the stack's lock (default: 0, fail at once)",
        )

    v = add("validate", "check a spec file (no root, no kernel access)")
    spec_arg(v, dirs=True)
    v.add_argument(
        "--expanded",
        action="store_true",
        help="print the spec with every repeat: template expanded and defaults: applied (itself a valid spec)",
    )
    v.add_argument("--format", choices=("yaml", "json"), default="yaml", help="format of --expanded")
    v.set_defaults(func=cmd_validate)

    pl = add("plan", "show what apply would change")
    spec_arg(pl, dirs=True)
    pl.add_argument("--adopt", action="store_true", help="take over declared objects that exist but are not owned")
    pl.add_argument("--detailed-exitcode", action="store_true", help="exit 2 when changes are pending, 0 when none")
    pl.add_argument("--format", choices=("text", "json", "markdown"), default="text", help="output format")
    pl.add_argument(
        "--out",
        metavar="PLAN.json",
        help="also save the plan, for `nkplan apply PLAN.json` (with --state DIR: a directory)",
    )
    pl.add_argument(
        "--state",
        metavar="SNAPSHOT.json|DIR",
        help="plan against a `show --format json` snapshot (no root), or a directory of them, HOST.json each (a fleet)",
    )
    pl.add_argument(
        "--sign-key",
        metavar="KEYFILE",
        help="sign the saved plan (--out) with the HMAC-SHA256 secret in KEYFILE (default: $NKPLAN_PLAN_KEY)",
    )
    no_color(pl)
    metrics_file(pl)
    pl.set_defaults(func=cmd_plan)

    ap = add("apply", "make the kernel match the spec, or carry out a saved plan")
    ap.add_argument(
        "file", help="spec YAML (or - for stdin), a directory of stack files, or a saved PLAN.json from `plan --out`"
    )
    ap.add_argument("--adopt", action="store_true", help="take over declared objects that exist but are not owned")
    ap.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    ap.add_argument("--quiet", "-q", action="store_true", help="do not print each step as it completes")
    ap.add_argument(
        "--keep-on-check-failure",
        action="store_true",
        help="when a reachability check (checks:) fails after apply, keep the changes instead of rolling back",
    )
    ap.add_argument(
        "--confirm-within",
        type=_seconds,
        metavar="SECONDS",
        help="revert the change unless it is confirmed (Enter, or `nkplan confirm STACK`) within SECONDS",
    )
    ap.add_argument(
        "--verify-key",
        metavar="KEYFILE",
        help="refuse a saved plan not signed with the secret in KEYFILE (default: $NKPLAN_PLAN_VERIFY_KEY)",
    )
    lock_timeout(ap)
    no_color(ap)
    metrics_file(ap)
    ap.set_defaults(func=cmd_apply)

    dr = add("drift", "plan against the kernel for a schedule: exit 2 when it differs (--converge: apply)")
    dr.add_argument("file", help="spec YAML")
    dr.add_argument("--converge", action="store_true", help="apply the pending changes instead of only reporting them")
    no_color(dr)
    metrics_file(dr)
    dr.set_defaults(func=cmd_drift)

    iu = add("install-units", "install the systemd units: nkplan@NAME.service (boot), nkplan-drift@NAME.timer")
    iu.add_argument("--dir", default="/etc/systemd/system", help="unit directory (default: %(default)s)")
    iu.set_defaults(func=cmd_install_units)

    cf = add("confirm", "keep the change of an `apply --confirm-within` that waits for confirmation")
    cf.add_argument("stack", help="the stack whose apply waits")
    cf.set_defaults(func=cmd_confirm)

    ck = add("check", "run the spec's reachability checks (checks:) against the kernel as it is; changes nothing")
    spec_arg(ck)
    ck.add_argument("--quiet", "-q", action="store_true", help="print only the checks that failed")
    ck.set_defaults(func=cmd_check)

    sh = add("show", "print the live state of a stack as a spec that plans to no changes (with FILE: BPF object paths)")
    spec_arg(sh, optional=True)
    sh.add_argument(
        "--format", choices=("yaml", "json"), default="yaml", help="json also embeds a snapshot for --state"
    )
    sh.add_argument("--all", action="store_true", help="include unowned namespaces and device pairs (to import)")
    sh.set_defaults(func=cmd_show)

    de = add("destroy", "remove everything a stack owns")
    spec_arg(de, optional=True, dirs=True)
    de.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    de.add_argument("--quiet", "-q", action="store_true", help="do not print each step as it completes")
    lock_timeout(de)
    no_color(de)
    de.set_defaults(func=cmd_destroy)

    st = add("stacks", "list the stacks present on this host (found through their ownership marks), with counts")
    st.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    st.set_defaults(func=cmd_stacks)

    gr = add("graph", "draw a spec, its plan (--plan) or a live stack (--stack): namespaces, pairs, programs")
    spec_arg(gr, optional=True)
    gr.add_argument("--plan", action="store_true", help="draw the plan against the kernel, coloured by action")
    gr.add_argument(
        "--format", choices=("dot", "mermaid", "svg", "png"), default="dot", help="svg/png need Graphviz (dot)"
    )
    gr.add_argument("--out", metavar="PATH", help="write to PATH instead of stdout")
    gr.set_defaults(func=cmd_graph)

    sc = add("schema", "print the JSON Schema of the spec (or, with --plan, of the JSON plan)")
    sc.add_argument("--plan", action="store_true", help="the schema of `plan --format json` and saved plans")
    sc.set_defaults(func=cmd_schema)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from nkplan.entry import EARLY
    from nkplan.run.signals import RECEIVED, as_interrupt, received, restore

    RECEIVED.clear()  # main() may run more than once in a process (tests, embedding programs)
    old = as_interrupt()  # SIGINT, SIGTERM and SIGHUP end a command from now on (run/signals.py)
    try:
        if EARLY:
            import signal

            raise KeyboardInterrupt(signal.Signals(EARLY[0]).name)
        return _main(argv)
    except KeyboardInterrupt as exc:
        # one that lands outside _run (parsing arguments, importing, writing metrics): nothing
        # was changed there (an apply's own interrupts are handled where they land)
        by = f" by {exc.args[0]}" if exc.args else ""
        print(f"interrupted{by}; nothing was changed", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit:  # argparse: --help, usage errors
        raise
    except BaseException:
        if not received():
            raise
        # a library made another error of the KeyboardInterrupt raised inside it (outside an
        # apply's steps, which take signals only between steps: nothing was changed)
        print(f"interrupted by {received()}; nothing was changed", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        restore(old)


def _main(argv: Sequence[str] | None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "metrics_file", None) and os.path.isdir(getattr(args, "file", "") or ""):
        args.metrics_file = None  # refused for a directory (cli_dirs): a stack's file is left alone
        print("error: --metrics-file describes one stack; run each stack file on its own", file=sys.stderr)
        return EXIT_ERROR
    if getattr(args, "metrics_file", None):
        from nkplan.run.metrics import Run

        args.metrics_run = Run(args.command)
    code = _run(args)
    if getattr(args, "metrics_file", None):
        from nkplan.run import metrics

        try:
            metrics.write(args.metrics_file, args.metrics_run, code)
        except OSError as exc:
            print(f"error: writing the metrics file {args.metrics_file}: {exc.strerror or exc}", file=sys.stderr)
            return code or EXIT_ERROR
    return code


def _run(args: argparse.Namespace) -> int:
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
    except KeyboardInterrupt as exc:
        # an interrupt inside an apply's steps comes as ApplyFailed (rolled back) above; one that
        # lands here came before the first change (loading, planning, the prompt) or in a
        # command that changes nothing, or after an apply completed (_execute says so itself)
        by = f" by {exc.args[0]}" if exc.args else ""
        print(f"interrupted{by}; nothing was changed", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    from nkplan.entry import ignore_late_signals

    code = main()
    ignore_late_signals()
    sys.exit(code)
