# -*- coding: utf-8 -*-
# Copyright: nkplan maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Action plugin of nkplan.netkit.stack: runs the module on the target and, for state=gathered with
dest, writes the stack's snapshot on the controller, where an offline fleet plan
(nkplan plan SPEC --state DIR) reads it. The target never needs to reach the controller, and no
copy/fetch task with delegate_to is needed in the playbook."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import tempfile

from ansible.module_utils.common.text.converters import to_bytes, to_native, to_text
from ansible.plugins.action import ActionBase


def snapshot_text(result):
    """The document of nkplan show --format json: the live stack as a spec plus x-nkplan-snapshot."""
    doc = dict(result['gathered'])
    doc['x-nkplan-snapshot'] = result['snapshot']
    return json.dumps(doc, indent=2) + '\n'


def write_if_changed(path, data):
    """Write data (bytes) to path atomically unless it already holds exactly that; True if written."""
    try:
        with open(path, 'rb') as f:
            if f.read() == data:
                return False
    except (IOError, OSError):
        pass
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        try:
            os.makedirs(directory)
        except OSError:  # several forks make it at once on a first gather: made is made
            if not os.path.isdir(directory):
                raise
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(path) + '.')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # like any file the user writes (mkstemp makes it 0600)
        os.rename(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return True


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp  # unused, as in ansible-core's own action plugins
        result.update(self._execute_module(module_name='nkplan.netkit.stack', module_args=self._task.args,
                                           task_vars=task_vars))
        dest = self._task.args.get('dest')
        # the module refuses dest with any other state, so a failure or another state writes nothing
        if not dest or result.get('failed') or result.get('state') != 'gathered':
            return result
        path = self._loader.path_dwim(os.path.expanduser(to_text(dest)))  # relative: the playbook's directory
        result['dest'] = path
        data = to_bytes(snapshot_text(result))
        if self._task.check_mode:
            try:
                with open(path, 'rb') as f:
                    result['changed'] = f.read() != data
            except (IOError, OSError):
                result['changed'] = True
            return result
        try:
            result['changed'] = write_if_changed(path, data)
        except (IOError, OSError) as exc:
            result.update(failed=True, changed=False,
                          msg='cannot write the snapshot to %s on the controller: %s' % (path, to_native(exc)))
        return result
