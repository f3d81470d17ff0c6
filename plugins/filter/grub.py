# Copyright: freifunk.wgmesh contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter grub_entries; documented in the adjacent grub_entries.yml."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import shlex

from ansible.errors import AnsibleFilterError
from ansible.module_utils.six import string_types

# grub-mkconfig names an entry's id after this variable; grub-reboot and grub-set-default
# take ids (or titles) joined by '>' from the top level down.
ID_OPTION = "$menuentry_id_option"
OPENER = re.compile(r"^\s*(menuentry|submenu)\s")
LINUX = re.compile(r"^\s*linux(?:efi|16)?\s+\S*/vmlinuz-(\S+)")


def _header(line, number):
    """`menuentry 'title' --class x $menuentry_id_option 'id' {` -> (title, id)."""
    try:
        words = shlex.split(line.rstrip().rstrip("{"), posix=True)
    except ValueError as exc:
        raise AnsibleFilterError(f"grub.cfg line {number}: cannot read {line.strip()!r}: {exc}") from None
    title = words[1] if len(words) > 1 else ""
    entry_id = ""
    if ID_OPTION in words[:-1]:
        entry_id = words[words.index(ID_OPTION) + 1]
    return title, entry_id


def grub_entries(cfg):
    """Every menuentry of a grub.cfg: title, id, path (for grub-reboot), the kernel release it
    boots ('' for none) and whether it is a recovery entry."""
    if not isinstance(cfg, string_types):
        raise AnsibleFilterError(f"grub_entries wants the text of a grub.cfg, got {type(cfg).__name__}")
    entries, stack = [], []  # stack: (kind, title, id, entry or None) of the open blocks
    for number, line in enumerate(cfg.splitlines(), start=1):
        match = OPENER.match(line)
        if match and line.rstrip().endswith("{"):
            title, entry_id = _header(line, number)
            path = ">".join([frame[2] or frame[1] for frame in stack if frame[0] == "submenu"] + [entry_id or title])
            entry = None
            if match.group(1) == "menuentry":
                entry = {"title": title, "id": entry_id, "path": path, "release": "", "recovery": "recovery" in title}
                entries.append(entry)
            stack.append((match.group(1), title, entry_id, entry))
        elif line.rstrip().endswith("{"):
            stack.append(("block", "", "", None))  # a function or another braced block
        elif line.strip() == "}":
            if not stack:
                raise AnsibleFilterError(f"grub.cfg line {number}: unbalanced '}}'")
            stack.pop()
        else:
            linux = LINUX.match(line)
            if linux and stack and stack[-1][3] is not None:
                stack[-1][3]["release"] = linux.group(1)
    if stack:
        raise AnsibleFilterError(f"grub.cfg: unbalanced braces, {stack[-1][0]} {stack[-1][1]!r} is never closed")
    return entries


class FilterModule:
    def filters(self):
        return {"grub_entries": grub_entries}
