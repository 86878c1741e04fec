"""`nkplan plan|apply|destroy DIR`: a directory of stack files (run/many.py). Printing and exit
codes only, like cli.py, whose helpers it uses.

- validate DIR: every stack file checked; exit 1 if any has a problem.
- plan DIR: every stack planned on its own; a stack with a problem stops only its own plan. One
  report (text, json: a plan set, markdown: one comment), one exit code: the worst of the stacks'.
- apply DIR: every stack planned first; if any stack cannot be planned, nothing is applied at
  all. Then one confirmation, then stack by stack in file order, each under its own lock, each
  planned again and refused as stale (exit 3) if that plan differs from the one shown. A stack
  that fails is rolled back (its own steps); the stacks applied before it stay applied (each was
  verified), the ones after it are not attempted; the report says which is which.
- destroy DIR: the same, in the reverse order."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from nkplan.errors import Interrupted, NkplanError, StalePlanError

if TYPE_CHECKING:
    from nkplan.core.plan import Plan
    from nkplan.documents.many import StackResult
    from nkplan.kernel.seam import Kernel
    from nkplan.run.many import Member

EXIT_OK, EXIT_ERROR = 0, 1


def _refuse(args: argparse.Namespace, verb: str) -> None:
    if getattr(args, "out", None):
        raise NkplanError(
            f"{verb} DIR --out: a saved plan holds one stack; save each stack's plan with "
            f"`nkplan plan FILE --out PLAN.json`, or apply the directory itself"
        )
    if getattr(args, "metrics_file", None):
        raise NkplanError(f"{verb} DIR --metrics-file: metrics describe one stack; run each stack file on its own")


def _members(args: argparse.Namespace) -> list[Member]:
    from nkplan import api
    from nkplan.run.many import load_all

    return load_all(args.file, lambda f, root: api.load_file(f, root=root))


def _print_problems(results: Sequence[StackResult]) -> None:
    for r in results:
        for problem in r.problems:
            print(f"error: {problem}", file=sys.stderr)


def validate_dir(args: argparse.Namespace) -> int:
    """validate DIR: every stack file checked (no kernel access), every problem listed."""
    if args.expanded:
        raise NkplanError("validate DIR --expanded: expand one stack file at a time")
    members = _members(args)
    for m in members:
        for problem in m.problems:
            print(f"error: {problem}", file=sys.stderr)
        if m.loaded is not None and not m.problems:
            s = m.loaded.spec
            print(
                f"{m.file}: valid (stack {s.stack!r}: {len(s.namespaces)} namespaces, "
                f"{len(s.links)} links, {len(s.routes)} routes, {len(s.rules)} rules)"
            )
    bad = sum(1 for m in members if m.problems)
    print(f"{len(members)} stack files: {len(members) - bad} valid, {bad} with problems.")
    return EXIT_ERROR if bad else EXIT_OK


def plan_dir(args: argparse.Namespace) -> int:
    from nkplan import api
    from nkplan.cli import EXIT_CHANGES, _colour
    from nkplan.documents.many import render_set_json, render_set_markdown, render_set_text
    from nkplan.run.many import plan_all, planner, worst

    _refuse(args, "plan")
    members = _members(args)
    kernel = None if args.state else api.kernel()
    results = plan_all(members, planner(kernel, adopt=args.adopt, snapshot=args.state))
    if args.detailed_exitcode:
        results = [
            dataclasses.replace(r, code=EXIT_CHANGES) if r.plan is not None and r.plan.has_changes else r
            for r in results
        ]
    code = worst([r.code for r in results])
    _print_problems(results)
    if args.format == "json":
        sys.stdout.write(render_set_json(args.file, results, code))
    elif args.format == "markdown":
        sys.stdout.write(render_set_markdown(args.file, results))
    else:
        sys.stdout.write(render_set_text(results, colour=_colour(args)))
    return code


def execute_dir(args: argparse.Namespace, verb: str) -> int:
    """apply DIR / destroy DIR: plan all, change nothing unless all planned, then stack by stack."""
    from nkplan import api
    from nkplan.cli import _colour, _confirm
    from nkplan.documents.many import render_set_text
    from nkplan.run.many import plan_all, planner
    from nkplan.run.workflow import empty_spec

    _refuse(args, verb)
    members = _members(args)
    if verb == "destroy":
        members = list(reversed(members))
        for m in members:
            if m.loaded is not None and not m.problems:
                m.loaded = empty_spec(m.loaded.spec.stack, m.file)
    kernel = api.kernel()
    adopt = bool(getattr(args, "adopt", False))
    results = plan_all(members, planner(kernel, adopt=adopt))
    sys.stdout.write(render_set_text(results, colour=_colour(args)))
    bad = [r for r in results if r.plan is None]
    if bad:
        _print_problems(results)
        names = ", ".join(r.file for r in bad)
        print(f"error: not every stack could be planned ({names}); nothing was changed.", file=sys.stderr)
        return EXIT_ERROR
    by_file = {m.file: m for m in members}

    def has_checks(r: StackResult) -> bool:  # apply FILE runs them also when nothing changes
        loaded = by_file[r.file].loaded
        return verb == "apply" and loaded is not None and bool(loaded.spec.checks)

    if not any(r.plan is not None and (r.plan.has_changes or has_checks(r)) for r in results):
        return EXIT_OK
    if any(r.plan is not None and r.plan.has_changes for r in results):
        _confirm(args, verb)
    done: list[str] = []
    try:
        return _execute_each(args, verb, kernel, results, by_file, has_checks, done)
    except KeyboardInterrupt as exc:  # between two stacks, or before a stack's first step
        by = f" by {exc.args[0]}" if exc.args else ""
        kept = f"already {DONE[verb]} and kept: {', '.join(done)}" if done else "nothing was changed"
        raise Interrupted(f"interrupted{by}; {kept}") from None


def _execute_each(
    args: argparse.Namespace,
    verb: str,
    kernel: Kernel,
    results: Sequence[StackResult],
    by_file: dict[str, Member],
    has_checks: Callable[[StackResult], bool],
    done: list[str],
) -> int:
    from nkplan import api
    from nkplan.cli import _progress
    from nkplan.documents.text import summary_line
    from nkplan.run.many import same_steps

    adopt = bool(getattr(args, "adopt", False))
    for i, r in enumerate(results):
        assert r.plan is not None
        m = by_file[r.file]
        assert m.loaded is not None
        if not r.plan.has_changes and not has_checks(r):
            continue

        def review(fresh: Plan, shown: Plan = r.plan, r: StackResult = r) -> None:
            if not same_steps(shown, fresh):
                raise StalePlanError(
                    f"{r.file}: the live state of stack {r.stack!r} changed since its plan was shown; "
                    "nothing of it was changed; make a new plan"
                )

        print(f"=== {verb} stack {r.stack!r} ({r.file}) ===", flush=True)
        try:
            applied = api.apply(
                m.loaded,
                adopt=adopt,
                review=review,
                progress=None if args.quiet else _progress,
                keep_on_check_failure=getattr(args, "keep_on_check_failure", False),
                on=kernel,
                lock_timeout=getattr(args, "lock_timeout", None) or 0.0,
            )
        except NkplanError as exc:
            for line in str(exc).splitlines():
                print(f"error: {line}", file=sys.stderr)
            # what happened to its own steps (rolled back, kept, untouched) is the error's to say
            _report(verb, r, done, _rest(results, i), f"{verb} failed (above: what became of its steps)")
            return exc.exit_code
        except KeyboardInterrupt:  # before its first step (its plan, the lock): it is untouched
            _report(verb, r, done, _rest(results, i), "interrupted before its first step; it is unchanged")
            raise
        done.append(r.file)
        print(f"{verb.capitalize()} of stack {r.stack!r} complete! {summary_line(applied)[len('Plan: ') :]}")
    unchanged = len(results) - len(done)
    print(f"{verb.capitalize()} complete: {len(done)} stacks changed, {unchanged} had no changes.")
    return EXIT_OK


DONE = {"apply": "applied", "destroy": "destroyed"}


def _rest(results: Sequence[StackResult], i: int) -> list[str]:
    return [x.file for x in results[i + 1 :] if x.plan is not None and x.plan.has_changes]


def _report(verb: str, r: StackResult, done: list[str], rest: list[str], what: str) -> None:
    """Where a directory's apply stopped: the failed stack, the ones kept, the ones not attempted."""
    print(f"error: stack {r.stack!r} ({r.file}): {what}.", file=sys.stderr)
    print(f"error: already {DONE[verb]} and kept: {', '.join(done) or 'none'}.", file=sys.stderr)
    print(f"error: not attempted: {', '.join(rest) or 'none'}.", file=sys.stderr)
