#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: nkplan maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: stack
short_description: Converge an nkplan stack (netkit/veth namespaces, device pairs, addresses, routes)
version_added: 0.1.0
description:
  - Makes the Linux kernel of the target match an nkplan spec, or removes a stack, or reads a stack's
    live state.
  - Drives the C(nkplan) command on the target through its JSON contract, the way
    M(community.general.terraform) drives C(terraform). C(nkplan plan SPEC --format json --out PLAN)
    computes the plan; if it has steps and this is not check mode, C(nkplan apply PLAN) carries out
    exactly the planned steps and is refused if the live state changed in between.
  - C(changed) is true exactly when the plan has steps, in check mode and in a real run; running the
    same task again reports C(ok).
  - Check mode computes the plan and changes nothing. Diff mode returns the before and after of each
    resource the plan changes.
  - On any error (invalid spec, with file:line:col; plan refused; kernel refusal, after nkplan rolled
    back its completed steps; stale plan; lock held) the task fails with nkplan's message.
  - With O(plan), applies a plan saved beforehand with C(nkplan plan --out) (for a fleet, made offline
    against snapshots gathered with O(state=gathered) and O(dest)), exactly its steps, or nothing if
    nkplan refuses it as stale or made for another host.
  - Needs nkplan on the target (C(pip install nkplan)) and root (privilege escalation with C(become)). The module itself uses
    only the Python standard library, so any target interpreter works.
author:
  - nkplan maintainers (!UNKNOWN)
options:
  src:
    description:
      - Path of an nkplan spec (YAML) on the target.
      - Mutually exclusive with O(config).
    type: path
  config:
    description:
      - The spec inline, as a dictionary or as a YAML string.
      - Written to a temporary file (mode C(0600)) in the module's temporary directory, removed afterwards.
        A dictionary is written as JSON; error messages name it C(<config>), with lines of that JSON
        (a YAML string keeps its own lines).
      - Relative BPF object paths in an inline spec would resolve against that temporary directory;
        use absolute paths.
      - Mutually exclusive with O(src).
    type: raw
  plan:
    description:
      - Path of a saved plan on the target, written by C(nkplan plan SPEC --out PLAN.json), for example
        offline against a snapshot of this host (C(nkplan plan SPEC --state SNAPSHOT.json --out ...)).
      - Runs C(nkplan apply PLAN), which carries out exactly the saved steps. nkplan refuses the plan (exit code 3) when it
        was made for another host or kernel, or when the live state is no longer the one it was planned
        against (for an offline plan, the snapshot); the task then fails with nkplan's message and
        RV(rc), and nothing is changed. A saved plan is used once; after it was applied the live state
        differs from its snapshot, so gather and plan again (that plan then has no changes and reports
        C(ok)).
      - C(changed) is the plan's C(has_changes). RV(plan), RV(summary) and the diff come from the file.
      - In check mode nothing is applied. The module plans the spec embedded in the saved plan against the
        kernel (written to a temporary file, so relative BPF object paths in it would not resolve) and
        fails, as the real run would (RV(rc) 3), unless that plan sees the same host, kernel and live
        state (the same state fingerprint) as the saved one.
      - Only with O(state=present). Mutually exclusive with O(src), O(config) and O(adopt) (adoption is
        decided when the plan is made, C(nkplan plan --adopt)).
    type: path
  state:
    description:
      - V(present) converges the stack to the spec (O(src) or O(config) is required).
      - V(absent) removes everything the stack owns. The stack is O(stack), or the C(stack) of the
        spec in O(src) or O(config). It plans the stack against an empty spec (C(stack) only), so
        check and diff mode show the deletes, and applies that saved plan.
      - V(present) with O(plan) applies that saved plan.
      - V(gathered) returns the live state of the stack (C(nkplan show --format json)) and never
        changes anything on the target; with O(dest) it also writes it as a snapshot file on the controller.
    type: str
    choices: [present, absent, gathered]
    default: present
  adopt:
    description:
      - Take over declared objects that exist but are not owned by the stack (made by hand, or owned by
        another stack), like C(nkplan plan --adopt). Without it such an object fails the task, naming it.
      - Only used with O(state=present).
    type: bool
    default: false
  dest:
    description:
      - With O(state=gathered), the path on the B(controller) where the stack's snapshot is written as JSON,
        exactly the document of C(nkplan show --stack NAME --format json) (the spec plus C(x-nkplan-snapshot)),
        ready for C(nkplan plan SPEC --state FILE) or a fleet plan C(nkplan plan SPEC --state DIR).
      - A relative path is relative to the playbook's directory. Missing parent directories are created.
        Written only when its content changes (then C(changed) is true); in check mode nothing is written.
      - Handled by the collection's action plugin for this module, on the controller.
    type: path
  stack:
    description:
      - Name of the stack, for O(state=absent) and O(state=gathered) without a spec.
      - With a spec, it must match the spec's C(stack) (a safety check).
    type: str
  nkplan_executable:
    description:
      - Path of the C(nkplan) command on the target.
      - Default is C(nkplan) found on E(PATH); else C(-m nkplan.cli) with the module's own Python when
        that Python has nkplan installed; else C(python3 -m nkplan.cli).
    type: path
attributes:
  check_mode:
    support: full
    description:
      - Computes the plan and changes nothing; reports the same C(changed) a real run would.
      - With O(plan), checks that the saved plan is still fresh for this host (see O(plan)).
      - With O(dest), does not write the snapshot; C(changed) says whether it would.
  diff_mode:
    support: full
    description: One before/after entry per resource the plan (or the saved O(plan)) creates, updates, replaces or deletes.
  action:
    support: full
    description: The action plugin writes the snapshot of O(state=gathered) on the controller (O(dest)).
  platform:
    support: full
    platforms: posix
    description: Linux targets with network namespaces (netkit needs Linux 6.7 or later).
notes:
  - The spec format, the JSON plan and the exit codes are documented in nkplan's README
    and by C(nkplan schema) and C(nkplan schema --plan).
  - One C(apply) per stack runs at a time; a concurrent run fails the task (nkplan exit code 4).
  - For a fleet (snapshot every host, plan all of them offline in CI with one report, apply each host's
    saved plan) see C(examples/fleet) in nkplan's repository.
'''

EXAMPLES = r'''
- name: Converge the pods stack from a spec on the target
  nkplan.netkit.stack:
    src: /etc/nkplan/pods.yaml
  become: true

- name: Inline spec
  nkplan.netkit.stack:
    config:
      stack: demo
      namespaces:
        - name: pod-a
      links:
        - name: nk-a
          kind: netkit
          mode: l3
          addresses: [10.10.0.1/32]
          peer: {name: eth0, namespace: pod-a, addresses: [10.10.1.2/32]}
      routes:
        - {namespace: pod-a, to: default, dev: eth0}
        - {to: 10.10.1.2/32, dev: nk-a}
  become: true
  register: demo

- name: Show what was planned
  ansible.builtin.debug:
    msg: "{{ demo.summary }}"

- name: Take over a hand-made pair declared in the spec
  nkplan.netkit.stack:
    src: /etc/nkplan/pods.yaml
    adopt: true
  become: true

- name: Read the live state of a stack
  nkplan.netkit.stack:
    stack: demo
    state: gathered
  become: true
  register: live

- name: Snapshot the stack to the controller, for an offline plan (nkplan plan SPEC --state snapshots/)
  nkplan.netkit.stack:
    stack: demo
    state: gathered
    dest: "snapshots/{{ inventory_hostname }}.json"
  become: true

- name: Copy this host's saved plan (made offline by nkplan plan ... --out plans/) to it
  ansible.builtin.copy:
    src: "plans/{{ inventory_hostname }}.json"
    dest: /var/lib/nkplan/plan.json
    mode: "0600"
  become: true
  check_mode: false  # check mode of the next task reads the plan too

- name: Apply exactly that plan; fails (rc 3, nothing changed) if the host moved since the snapshot
  nkplan.netkit.stack:
    plan: /var/lib/nkplan/plan.json
  become: true

- name: Remove everything the stack owns
  nkplan.netkit.stack:
    stack: demo
    state: absent
  become: true
'''

RETURN = r'''
stack:
  description: Name of the stack.
  returned: always
  type: str
  sample: demo
state:
  description: The O(state) the module ran with.
  returned: always
  type: str
  sample: present
plan:
  description:
    - The JSON plan document of C(nkplan plan --format json) (schema C(nkplan schema --plan)),
      computed before any change.
    - With O(plan), the saved plan's document as read from the file (without its embedded spec text,
      operations and checksum).
  returned: when O(state) is V(present) or V(absent)
  type: dict
  sample:
    format_version: "1.0"
    nkplan_version: "0.1.0"
    stack: demo
    has_changes: true
    summary: {add: 1, change: 0, destroy: 0, replace: 0, unchanged: 2}
    resource_changes:
      - address: "link[nk-a]"
        type: link
        name: nk-a
        namespace: null
        change: {actions: [create], before: null, after: {kind: netkit}, changed_paths: [], replace_paths: []}
        action_reason: null
        reason: null
    resource_drift: []
    diagnostics: []
summary:
  description: Counts of the plan.
  returned: when O(state) is V(present) or V(absent)
  type: dict
  contains:
    add:
      description: Resources to create.
      type: int
    change:
      description: Resources to update in place.
      type: int
    destroy:
      description: Resources to delete.
      type: int
    replace:
      description: Resources to replace (delete, then create).
      type: int
    unchanged:
      description: Resources already as declared.
      type: int
  sample: {add: 1, change: 0, destroy: 0, replace: 0, unchanged: 2}
stdout:
  description: What C(nkplan apply PLAN) printed (the plan as text and each completed step).
  returned: when changes were applied, and whenever a saved O(plan) was applied
  type: str
rc:
  description:
    - nkplan's exit code when it failed, for example V(3) when a saved O(plan) was refused as stale or made
      for another host (also in check mode, when the check finds the plan would be refused).
  returned: failed
  type: int
  sample: 3
dest:
  description: The file on the controller the snapshot was written to (O(dest), made absolute).
  returned: when O(state=gathered) and O(dest) are set
  type: str
  sample: /home/ops/fleet/snapshots/node1.json
gathered:
  description:
    - The stack's live state as a spec that plans to no changes (the form of C(nkplan show --format json)).
  returned: when O(state=gathered)
  type: dict
  sample:
    stack: demo
    namespaces: [{name: pod-a}]
    links: [{name: nk-a, kind: netkit, peer: {name: eth0, namespace: pod-a}}]
    routes: []
snapshot:
  description:
    - Everything nkplan read from the kernel (the C(x-nkplan-snapshot) of C(nkplan show --format json))
      with the host, the kernel's capabilities, namespaces, links, devices and routes.
    - RV(gathered) with this added under C(x-nkplan-snapshot), saved as JSON, is a snapshot for
      C(nkplan plan SPEC --state FILE) (plans without root).
  returned: when O(state=gathered)
  type: dict
exists:
  description: Whether the stack owns anything in the kernel.
  returned: when O(state=gathered)
  type: bool
  sample: true
'''

import json
import os
import sys

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_native
from ansible.module_utils.six import string_types

CONFIG_NAME = '<config>'


def _flatten(record, prefix=''):
    """`path: value` lines of a plan record, None values left out (nkplan's text plan reads the same)."""
    lines = []
    for key, value in record.items():
        path = prefix + key
        if isinstance(value, dict) and value:
            lines.extend(_flatten(value, path + '.'))
        elif value is not None:
            lines.append('%s: %s' % (path, json.dumps(value, sort_keys=True)))
    return lines


def _get(record, path):
    for part in path.split('.'):
        if not isinstance(record, dict):
            return None
        record = record.get(part)
    return record


def _put(record, path, value):
    parts = path.split('.')
    for part in parts[:-1]:
        record = record.setdefault(part, {})
    record[parts[-1]] = value


def _copy(record):
    return json.loads(json.dumps(record))


def plan_diff(plan):
    """One before/after entry per resource the plan touches. An update shows the live record with
    only the planned paths changed, so attributes nkplan leaves alone (a kernel-chosen MAC) do not
    show up as differences."""
    diffs = []
    for rc in plan.get('resource_changes', []):
        change = rc['change']
        actions = change['actions']
        if actions == ['no-op']:
            continue
        before, after = change.get('before'), change.get('after')
        if actions == ['update'] and before is not None and after is not None:
            after = _copy(before)
            for path in change.get('changed_paths', []):
                _put(after, path, _get(change['after'], path))
        verb = {('create',): 'create', ('update',): 'update', ('delete',): 'delete',
                ('delete', 'create'): 'replace'}.get(tuple(actions), '/'.join(actions))
        reason = rc.get('reason')
        diffs.append({
            'before_header': '%s (%s)' % (rc['address'], 'live' if before is not None else 'absent'),
            'after_header': '%s (planned: %s%s)' % (rc['address'], verb, ', ' + reason if reason else ''),
            'before': ''.join(line + '\n' for line in _flatten(before or {})),
            'after': ''.join(line + '\n' for line in _flatten(after or {})),
        })
    return diffs


class Nkplan(object):
    def __init__(self, module):
        self.module = module
        self.command = self._command()
        self.config_path = None
        self.config_name = CONFIG_NAME  # what messages call config_path

    def _command(self):
        exe = self.module.params['nkplan_executable']
        if exe:
            return [exe]
        found = self.module.get_bin_path('nkplan')
        if found:
            return [found]
        if self._importable_here():
            return [sys.executable, '-m', 'nkplan.cli']
        return [self.module.get_bin_path('python3', required=True), '-m', 'nkplan.cli']

    @staticmethod
    def _importable_here():
        try:
            from importlib.util import find_spec
        except ImportError:  # Python 2
            try:
                import imp  # pylint: disable=deprecated-module
                imp.find_module('nkplan')
                return True
            except ImportError:
                return False
        return find_spec('nkplan') is not None

    def _clean(self, text):
        text = to_native(text or '').strip()
        if self.config_path:
            text = text.replace(self.config_path, self.config_name)
        return text

    def run(self, args, what, **fail_extra):
        cmd = self.command + list(args)
        rc, out, err = self.module.run_command(cmd, environ_update={'NO_COLOR': '1'})
        if rc != 0:
            message = self._clean(err) or self._clean(out) or 'no message'
            self.module.fail_json(
                msg='%s failed (nkplan exit code %d): %s' % (what, rc, message),
                rc=rc, cmd=cmd, stdout=self._clean(out), stderr=self._clean(err), **fail_extra
            )
        return out

    def run_json(self, args, what):
        """A read-only nkplan command (plan, show) whose stdout is a JSON document. nkplan never
        exits 0 with nothing on stdout, but run_command can lose the output of a command that
        writes it just before exiting: it stops reading when a select() timeout and the
        child's exit coincide (seen on a slow single-CPU host). Running the command again is
        safe (it only reads; a plan's --out file is rewritten from the same fresh read)."""
        for _attempt in range(3):
            out = self.run(args, what)
            if out.strip():
                break
        try:
            return json.loads(out)
        except ValueError as exc:
            self.module.fail_json(msg='%s printed no JSON document: %s' % (what, to_native(exc)),
                                  cmd=self.command + list(args), stdout=to_native(out))

    def write(self, name, text):
        path = os.path.join(self.module.tmpdir, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, 'wb') as f:
            f.write(to_bytes(text, errors='surrogate_or_strict'))
        return path

    def spec(self):
        """The spec file to hand to nkplan: src, or config written to a private temporary file."""
        params = self.module.params
        if params['src']:
            return params['src']
        config = params['config']
        if config is None:
            return None
        if isinstance(config, dict):
            text = json.dumps(config, indent=2, sort_keys=False) + '\n'
        elif isinstance(config, string_types):
            text = config
        else:
            self.module.fail_json(msg='config must be a dictionary or a YAML string, not %s' % type(config).__name__)
        self.config_path = self.write('config.yaml', text)
        return self.config_path

    def plan(self, spec, adopt, save):
        args = ['plan', spec, '--format', 'json']
        planfile = None
        if save:
            planfile = os.path.join(self.module.tmpdir, 'plan.json')
            args += ['--out', planfile]
        if adopt:
            args.append('--adopt')
        return self.run_json(args, 'nkplan plan'), planfile


def check_stack(module, name):
    wanted = module.params['stack']
    if wanted and name != wanted:
        module.fail_json(msg="the spec is for stack %r, not for stack %r (option stack); nothing was changed"
                         % (name, wanted))


def converge(module, nk, spec, adopt):
    plan, planfile = nk.plan(spec, adopt, save=not module.check_mode)
    check_stack(module, plan.get('stack'))
    result = dict(
        changed=bool(plan['has_changes']),
        stack=plan['stack'],
        state=module.params['state'],
        plan=plan,
        summary=plan['summary'],
    )
    if module._diff:
        result['diff'] = plan_diff(plan)
    if plan['has_changes'] and not module.check_mode:
        # the saved plan: exactly the steps reported above, refused (exit 3) if the live state moved
        result['stdout'] = nk._clean(nk.run(['apply', planfile], 'nkplan apply'))
    return result


def read_saved_plan(module, path):
    """The saved plan's JSON document. Only its shape is checked here; nkplan apply checks the rest
    (checksum, format version, host, freshness) and names what is wrong."""
    try:
        with open(path, 'rb') as f:
            raw = f.read()
    except (IOError, OSError) as exc:
        module.fail_json(msg='cannot read the plan %s: %s; nothing was changed' % (path, to_native(exc.strerror or exc)),
                         changed=False)
    try:
        doc = json.loads(to_native(raw, errors='surrogate_or_strict'))
    except ValueError as exc:
        doc, why = None, 'not JSON (%s)' % to_native(exc)
    else:
        why = 'no checksum, spec or resource_changes'
    if not (isinstance(doc, dict) and 'checksum' in doc and isinstance(doc.get('spec'), dict)
            and isinstance(doc.get('resource_changes'), list) and isinstance(doc.get('planned_against'), dict)):
        module.fail_json(msg='%s is not a saved nkplan plan (%s); write one with nkplan plan --out; nothing was changed'
                         % (path, why), changed=False)
    return doc


def plan_view(doc):
    """The saved plan as the JSON plan document of plan --format json: without the spec text, the
    operations (full kernel records) and the checksum, which are for nkplan apply."""
    view = dict((k, v) for k, v in doc.items() if k not in ('operations', 'checksum'))
    view['spec'] = dict((k, v) for k, v in doc['spec'].items() if k != 'text')
    return view


def stale_reason(saved, fresh):
    """Why nkplan apply would refuse the saved plan, judged from a plan made now from its embedded
    spec (nkplan's own check compares the same host, kernel and state fingerprint); None if fresh."""
    was, now = saved.get('planned_against') or {}, fresh.get('planned_against') or {}
    was_host, now_host = was.get('host') or {}, now.get('host') or {}
    if was.get('source') == 'snapshot' and was_host.get('hostname') != now_host.get('hostname'):
        return ('this plan was made against a snapshot of host %r; this is %r'
                % (was_host.get('hostname'), now_host.get('hostname')))
    if was_host.get('machine_id') != now_host.get('machine_id'):
        return ('this plan was made on host %r (machine-id %s); this is %r (machine-id %s)'
                % (was_host.get('hostname'), was_host.get('machine_id'), now_host.get('hostname'),
                   now_host.get('machine_id')))
    if was_host.get('kernel') != now_host.get('kernel'):
        return 'the kernel changed since the plan was made (%s -> %s)' % (was_host.get('kernel'), now_host.get('kernel'))
    if was.get('state_fingerprint') == now.get('state_fingerprint'):
        return None
    before = dict((rc['address'], rc['change'].get('before')) for rc in saved['resource_changes'])
    after = dict((rc['address'], rc['change'].get('before')) for rc in fresh.get('resource_changes', []))
    what = []
    for address in sorted(set(before) | set(after)):
        if before.get(address) == after.get(address):
            continue
        if before.get(address) is None:
            what.append(address + ' now exists')
        elif after.get(address) is None:
            what.append(address + ' is gone')
        else:
            what.append(address + ' changed')
    against = 'the snapshot the plan was made against' if was.get('source') == 'snapshot' else 'the plan'
    return 'the live state differs from %s: %s' % (against, '; '.join(what) or 'unknown difference')


def apply_saved(module, nk, path):
    doc = read_saved_plan(module, path)
    check_stack(module, doc.get('stack'))
    result = dict(
        changed=bool(doc.get('has_changes')),
        stack=doc.get('stack'),
        state=module.params['state'],
        plan=plan_view(doc),
        summary=doc.get('summary'),
    )
    if module._diff:
        result['diff'] = plan_diff(doc)
    if module.check_mode:
        # A saved plan has no dry run: plan its embedded spec against the kernel now and compare,
        # so check mode fails exactly when the real run would be refused as stale (exit 3).
        spec = doc['spec']
        nk.config_path = nk.write('saved-plan-spec.yaml', spec.get('text') or '')
        nk.config_name = spec.get('file') or '<saved plan spec>'
        args = ['plan', nk.config_path, '--format', 'json'] + (['--adopt'] if doc.get('adopt') else [])
        reason = stale_reason(doc, nk.run_json(args, 'nkplan plan (checking the saved plan)'))
        if reason:
            module.fail_json(msg='nkplan apply would refuse the plan %s (nkplan exit code 3): %s. Make a new plan; '
                             'nothing was changed (check mode)' % (path, reason), rc=3, changed=False)
        return result
    # Also a plan without changes is run: nkplan then still checks it is fresh for this host.
    result['stdout'] = nk._clean(nk.run(['apply', path], 'nkplan apply', changed=False))
    return result


def stack_name(module, nk, spec):
    params = module.params
    if params['stack']:
        return params['stack']
    if isinstance(params['config'], dict) and params['config'].get('stack'):
        return params['config']['stack']
    return nk.run_json(['show', spec, '--format', 'json'], 'nkplan show')['stack']


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type='path'),
            config=dict(type='raw'),
            plan=dict(type='path'),
            state=dict(type='str', default='present', choices=['present', 'absent', 'gathered']),
            adopt=dict(type='bool', default=False),
            stack=dict(type='str'),
            dest=dict(type='path'),  # written on the controller by the action plugin
            nkplan_executable=dict(type='path'),
        ),
        mutually_exclusive=[('src', 'config', 'plan')],
        required_if=[('state', 'present', ('src', 'config', 'plan'), True)],
        required_one_of=[('src', 'config', 'stack', 'plan')],
        supports_check_mode=True,
    )
    nk = Nkplan(module)
    params = module.params
    state = params['state']
    if params['plan'] and state != 'present':
        module.fail_json(msg='plan (a saved plan to apply) goes with state=present, not state=%s' % state)
    if params['plan'] and params['adopt']:
        module.fail_json(msg='adopt cannot be given with plan: adoption is decided when the plan is made '
                         '(nkplan plan --adopt)')
    if params['dest'] and state != 'gathered':
        module.fail_json(msg='dest (where the snapshot is written on the controller) goes with state=gathered, '
                         'not state=%s' % state)
    if params['plan']:
        module.exit_json(**apply_saved(module, nk, params['plan']))
    spec = nk.spec()

    if state == 'present':
        module.exit_json(**converge(module, nk, spec, module.params['adopt']))

    if state == 'absent':
        name = stack_name(module, nk, spec)
        check_stack(module, name)
        empty = nk.write('absent.yaml', json.dumps({'stack': name}) + '\n')
        module.exit_json(**converge(module, nk, empty, adopt=False))

    args = ['show', spec] if spec else ['show', '--stack', module.params['stack']]
    doc = nk.run_json(args + ['--format', 'json'], 'nkplan show')
    check_stack(module, doc.get('stack'))
    snapshot = doc.pop('x-nkplan-snapshot', None)
    exists = any(doc.get(kind) for kind in ('namespaces', 'links', 'routes'))
    module.exit_json(changed=False, stack=doc.get('stack'), state=state, gathered=doc, snapshot=snapshot,
                     exists=exists)


if __name__ == '__main__':
    main()
