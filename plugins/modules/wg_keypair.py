#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: freifunk.wgmesh contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: wg_keypair
short_description: Make sure a WireGuard private key exists on the target and return its public key
version_added: 0.1.0
description:
  - Creates a WireGuard private key file at O(path) on the target if there is none, so the private key never
    leaves the host that uses it. Returns the public key.
  - The file is written to a temporary file created with mode V(0600) in the same directory (never readable by
    others, not even for an instant), then renamed into place.
  - An existing valid key is kept; its mode is set to V(0600) if it differs and O(owner)/O(group) are applied.
  - An existing file that does not hold a valid key makes the module fail without touching it, unless O(force)
    is set. A valid key is never replaced unless O(private_key) and O(replace) are given; to rotate a key, remove
    the file first.
  - With O(private_key) the module writes that key instead of making one. This is for the one exception to
    "a private key never leaves its host", the two members of an HA pair, which answer with one key (docs/ha.md).
  - The key is made with the C(cryptography) Python library when the target has it, else with C(wg genkey).
    The private key is never returned, logged or shown in a diff.
author:
  - freifunk.wgmesh contributors (@freifunk-wgmesh)
requirements:
  - the C(cryptography) Python library or C(wg) from wireguard-tools on the target
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - In check mode a missing key is not made, so RV(public_key) is V(null), unless O(private_key) is given.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details:
      - The diff shows the file as absent or present with its public key and mode, never the private key.
options:
  path:
    description:
      - Path of the private key file on the target. Its directory must exist.
    type: path
    required: true
  owner:
    description:
      - Owner of the key file (name or uid). Default is the user running the module.
    type: str
  group:
    description:
      - Group of the key file (name or gid). Default is that user's group.
    type: str
  force:
    description:
      - Replace an existing file that does not hold a valid WireGuard private key with a new key.
      - A valid key is never replaced by this; see O(replace).
    type: bool
    default: false
  private_key:
    description:
      - The private key to write (base64, as C(wg genkey) writes it; surrounding whitespace such as a trailing
        newline is dropped). Without it the module makes a new key when there is none.
      - A file that already holds this key is left as it is (only its mode and owner are fixed).
      - A file that holds another valid key makes the module fail, naming both public keys, unless O(replace) is set.
      - Never logged, returned or shown in a diff; the diff shows the public keys before and after.
    type: str
  replace:
    description:
      - With O(private_key), replace an existing valid key that differs from it.
    type: bool
    default: false
notes:
  - The file holds the key as C(wg genkey) writes it (base64 and a newline), the format C(wg set private-key),
    C(wg-quick) C(PostUp) lines and systemd-networkd C(PrivateKeyFile=) read.
seealso:
  - module: freifunk.wgmesh.wg_peers
"""

EXAMPLES = r"""
- name: Private key for wg-welt, made on the gateway itself
  freifunk.wgmesh.wg_keypair:
    path: /etc/wireguard/wg-welt.key
    group: systemd-network
  register: wg_welt_key

- name: The same key on the other member of an HA pair (read there with slurp; keep it out of every log)
  freifunk.wgmesh.wg_keypair:
    path: /etc/wireguard/wg-welt.key
    private_key: "{{ partner_key.content | b64decode }}"
  no_log: true

- name: Show the public key to hand to the broker
  ansible.builtin.debug:
    msg: "{{ wg_welt_key.public_key }}"
"""

RETURN = r"""
path:
  description: The key file path.
  returned: always
  type: str
  sample: /etc/wireguard/wg-welt.key
public_key:
  description: >-
    The public key of the private key in the file. V(null) in check mode when the key would be made (not when
    O(private_key) is given).
  returned: always
  type: str
  sample: XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8=
"""

import os  # noqa: E402
import stat  # noqa: E402
import tempfile  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.freifunk.wgmesh.plugins.module_utils._wgkey import (  # noqa: E402
    HAS_CRYPTOGRAPHY,
    KEY_RE,
    new_private_key,
    public_key_of,
)

KEY_MODE = 0o600


class KeyTool:
    """Makes keys and derives public keys, with cryptography or else the wg tool."""

    def __init__(self, module):
        self.module = module
        self.wg = None if HAS_CRYPTOGRAPHY else module.get_bin_path("wg", required=True)

    def generate(self):
        return new_private_key() if HAS_CRYPTOGRAPHY else self._wg(["genkey"])

    def public_key(self, private_key):
        return public_key_of(private_key) if HAS_CRYPTOGRAPHY else self._wg(["pubkey"], data=private_key)

    def _wg(self, args, data=None):
        # The private key travels only through the pipe, never argv.
        rc, out, err = self.module.run_command([self.wg, *args], data=data, binary_data=False)
        if rc != 0:
            self.module.fail_json(msg="wg %s failed (rc=%d): %s" % (args[0], rc, err.strip()))
        return out.strip()


class Keypair:
    def __init__(self, module):
        self.module = module
        self.path = module.params["path"]
        self.keys = KeyTool(module)

    def _read_existing(self):
        """Return the private key in the file, None if there is no file; fail if it holds no key."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return None, None
        if not stat.S_ISREG(info.st_mode):
            self.module.fail_json(msg="%s exists and is not a regular file" % self.path, path=self.path)
        try:
            with open(self.path) as handle:
                content = handle.read(4096).rstrip()
        except (IOError, OSError, UnicodeDecodeError) as exc:
            self.module.fail_json(msg="cannot read %s: %s" % (self.path, exc), path=self.path)
        if KEY_RE.match(content):
            return content, info
        if self.module.params["force"]:
            return None, info
        # Never quote the content: it may be a key in another format.
        self.module.fail_json(
            msg="%s exists but does not hold a WireGuard private key (44 characters of base64 ending in '=', "
            "as 'wg genkey' writes it); it was left untouched. Fix or remove it, or set force=true to replace it."
            % self.path,
            path=self.path,
        )

    def _write_new(self, private_key):
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            self.module.fail_json(msg="directory %s of %s does not exist" % (directory, self.path), path=self.path)
        # mkstemp creates the file O_EXCL with mode 0600 whatever the umask: the key is
        # never readable by others, and rename() makes it appear whole or not at all.
        fd, temp = tempfile.mkstemp(prefix=".%s." % os.path.basename(self.path), dir=directory)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(private_key + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            self.module.set_owner_if_different(temp, self.module.params["owner"], False)
            self.module.set_group_if_different(temp, self.module.params["group"], False)
            os.rename(temp, self.path)
        except BaseException:
            if os.path.exists(temp):
                os.unlink(temp)
            raise
        directory_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(directory_fd)
        finally:
            os.close(directory_fd)

    def _given_key(self):
        """The key of option private_key, checked (never quoted), or None when none is given."""
        given = self.module.params["private_key"]
        if given is None:
            if self.module.params["replace"]:
                self.module.fail_json(msg="replace=true needs private_key (the key to replace %s with)" % self.path)
            return None
        given = given.strip()
        if not KEY_RE.match(given):
            self.module.fail_json(
                msg="option private_key for %s is not a WireGuard private key (44 characters of base64 ending in '=', "
                "as 'wg genkey' writes it); nothing was written" % self.path,
                path=self.path,
            )
        self.module.no_log_values.add(given)
        return given

    def _check_replace(self, private_key, given):
        """Fail unless the existing key may give way to the given one; return their public keys."""
        before = self.keys.public_key(private_key)
        after = self.keys.public_key(given)
        if not self.module.params["replace"]:
            self.module.fail_json(
                msg="%s holds another WireGuard key (public key %s) than the one given (public key %s); it was left "
                "untouched. Set replace=true to replace it." % (self.path, before, after),
                path=self.path,
            )
        return before, after

    def run(self):
        given = self._given_key()
        private_key, info = self._read_existing()
        if private_key:
            # Belt and braces: AnsibleModule masks these values in anything it returns.
            self.module.no_log_values.add(private_key)
        result = {"changed": False, "path": self.path, "public_key": None}
        diff = {"before_header": self.path, "after_header": self.path}

        if given is not None and private_key is not None and private_key != given:
            before, after = self._check_replace(private_key, given)
            result.update(changed=True, public_key=after)
            diff["before"] = "present, mode %04o, public key %s\n" % (stat.S_IMODE(info.st_mode), before)
            diff["after"] = "present, mode 0600, public key %s\n" % after
            if not self.module.check_mode:
                self._write_new(given)
        elif private_key is None:
            result["changed"] = True
            diff["before"] = "absent\n" if info is None else "present, not a WireGuard private key\n"
            if given is not None:
                result["public_key"] = self.keys.public_key(given)
                diff["after"] = "present, mode 0600, public key %s\n" % result["public_key"]
                if not self.module.check_mode:
                    self._write_new(given)
            elif self.module.check_mode:
                diff["after"] = "present, mode 0600, new key (public key known after the run)\n"
            else:
                private_key = self.keys.generate()
                self.module.no_log_values.add(private_key)
                self._write_new(private_key)
                result["public_key"] = self.keys.public_key(private_key)
                diff["after"] = "present, mode 0600, public key %s\n" % result["public_key"]
        else:
            result["public_key"] = self.keys.public_key(private_key)
            mode = stat.S_IMODE(info.st_mode)
            diff["before"] = "present, mode %04o, public key %s\n" % (mode, result["public_key"])
            diff["after"] = "present, mode 0600, public key %s\n" % result["public_key"]
            if mode != KEY_MODE:
                result["changed"] = True
                if not self.module.check_mode:
                    os.chmod(self.path, KEY_MODE)
            # These report their own changes (and honour check mode) through the diff dict.
            owner_diff = {"before": {}, "after": {}}
            changed = self.module.set_owner_if_different(self.path, self.module.params["owner"], False, owner_diff)
            changed = self.module.set_group_if_different(self.path, self.module.params["group"], changed, owner_diff)
            if changed:
                result["changed"] = True
                for side in ("before", "after"):
                    ids = ", ".join("%s %s" % item for item in sorted(owner_diff[side].items()))
                    diff[side] += "%s\n" % ids
        if self.module._diff:
            result["diff"] = diff
        self.module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "owner": {"type": "str"},
            "group": {"type": "str"},
            "force": {"type": "bool", "default": False},
            "private_key": {"type": "str", "no_log": True},
            "replace": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    Keypair(module).run()


if __name__ == "__main__":
    main()
