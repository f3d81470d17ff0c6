#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: freifunk.wgmesh contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: kernel_tree
short_description: Stage a patched and configured Linux source tree for building
version_added: 0.1.0
description:
  - Unpacks a Linux source tarball into O(dest), applies a patch series in order, writes the C(.config) (a make
    target such as C(tinyconfig), or a config file), merges config fragments with the tree's
    C(scripts/kconfig/merge_config.sh), runs C(make olddefconfig) and checks that every option the fragments ask for
    is in the final C(.config).
  - The tree is staged once per O(id) (the build's identity; the kernel_build role passes its suffix). A marker file
    in O(dest) records it, and a tree whose marker holds O(id) is left alone. Any other content of O(dest) (another
    identity, a staging that failed half-way) is removed and staged again.
  - A patch that does not apply (checked with C(patch --dry-run) before it is applied) fails the module naming the
    patch, its place in the series and C(patch)'s output; nothing is applied after it and no marker is written.
author:
  - freifunk.wgmesh contributors (@freifunk-wgmesh)
requirements:
  - GNU tar, xz-utils, GNU patch, make and what C(make <config target>) needs (gcc, bison, flex) on the target
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - In check mode a tree to be staged is not touched, and RV(kernelversion) is V(null).
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details:
      - The diff shows the marker before and after (identity, patches, config, fragments).
options:
  src:
    description:
      - The source tarball on the target (any compression GNU tar reads), with the tree in one top directory (as
        Debian's C(linux-source-6.1), kernel.org's tarballs and C(git archive --prefix=linux/) have it).
    type: path
    required: true
  dest:
    description:
      - Directory of the tree. Its parent must exist. The module owns it; do not keep anything else there.
    type: path
    required: true
  id:
    description:
      - The identity of the wanted tree; a change stages the tree again.
    type: str
    required: true
  patches:
    description:
      - Patch files on the target, applied in this order with C(patch -p1 --forward --batch --fuzz=0) (the format of
        C(git format-patch) and C(diff -u) with a/ and b/ prefixes; no fuzz, so a patch lands where it says or fails).
    type: list
    elements: path
    default: []
  config:
    description:
      - The config base. A make target ending in C(config) (C(tinyconfig), C(defconfig), C(allnoconfig), ...), or the
        absolute path of a config file on the target (C(.xz) compressed files are read too, like Debian's
        C(/usr/src/linux-config-6.1/config.amd64_none_amd64.xz)).
    type: str
    required: true
  config_fragments:
    description:
      - Config fragment files on the target (lines C(CONFIG_X=value) and C(# CONFIG_X is not set)), merged in this
        order (a later one wins), then C(make olddefconfig). The module fails naming the fragment and the option when
        an option did not make it into the final C(.config) (an unmet dependency, a typo).
    type: list
    elements: path
    default: []
  arch:
    description:
      - Debian architecture of the build; gives the kernel's C(ARCH) for make (amd64 is C(x86_64)).
    type: str
    default: amd64
    choices: [amd64, arm64, armhf, i386, ppc64el, riscv64, s390x]
seealso:
  - plugin: freifunk.wgmesh.kernel_suffix
    plugin_type: filter
  - plugin: freifunk.wgmesh.kernel_packages
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Stage Debian's 6.1 source with two patches and tinyconfig
  freifunk.wgmesh.kernel_tree:
    src: /usr/src/linux-source-6.1.tar.xz
    dest: /var/lib/wgmesh-kernel-build/wgmesh.1a2b3c4d/linux
    id: -wgmesh.1a2b3c4d
    patches:
      - /var/lib/wgmesh-kernel-build/wgmesh.1a2b3c4d/patches/0001-first.patch
      - /var/lib/wgmesh-kernel-build/wgmesh.1a2b3c4d/patches/0002-second.patch
    config: tinyconfig
    config_fragments:
      - /var/lib/wgmesh-kernel-build/wgmesh.1a2b3c4d/config/0001-wgmesh.config
  register: tree
"""

RETURN = r"""
dest:
  description: The tree's directory.
  returned: always
  type: str
  sample: /var/lib/wgmesh-kernel-build/wgmesh.1a2b3c4d/linux
kernelversion:
  description: The kernel version of the tree's Makefile, as C(make kernelversion) prints it. V(null) in check mode when
    the tree would be staged.
  returned: always
  type: str
  sample: 6.1.176
marker:
  description: Path of the marker file that records the staged identity.
  returned: always
  type: str
  sample: /var/lib/wgmesh-kernel-build/wgmesh.1a2b3c4d/linux/.wgmesh-tree.json
"""

import json  # noqa: E402
import lzma  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.freifunk.wgmesh.plugins.module_utils._kernel import (  # noqa: E402
    MAKE_ARCH,
    fragments_mismatches,
    makefile_kernelversion,
    parse_config,
)

MARKER = ".wgmesh-tree.json"
# Enough of a failing command's output to see why, not a whole build log.
OUTPUT_TAIL = 4000


def _tail(text):
    text = text.strip()
    return text if len(text) <= OUTPUT_TAIL else "...\n" + text[-OUTPUT_TAIL:]


class Tree:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.dest = module.params["dest"]
        self.marker = os.path.join(self.dest, MARKER)
        self.make_arg = "ARCH=%s" % MAKE_ARCH[module.params["arch"]]

    def wanted(self):
        p = self.params
        return {
            "id": p["id"],
            "src": p["src"],
            "patches": [os.path.basename(path) for path in p["patches"]],
            "config": p["config"],
            "fragments": [os.path.basename(path) for path in p["config_fragments"]],
        }

    def staged(self):
        """The marker's content, or None when there is no readable marker."""
        try:
            with open(self.marker) as handle:
                return json.load(handle)
        except (IOError, OSError, ValueError):
            return None

    def fail(self, msg, **kwargs):
        self.module.fail_json(msg=msg, dest=self.dest, **kwargs)

    def check_inputs(self):
        p = self.params
        files = [("src", p["src"])] + [("patch", path) for path in p["patches"]]
        files += [("config fragment", path) for path in p["config_fragments"]]
        if os.path.isabs(p["config"]):
            files.append(("config", p["config"]))
        elif not p["config"].endswith("config") or "/" in p["config"]:
            self.fail(
                "config %r is neither a make target ending in 'config' (tinyconfig, defconfig, ...) nor an absolute "
                "path of a config file" % p["config"]
            )
        for what, path in files:
            if not os.path.isfile(path):
                self.fail("%s %s does not exist on the target (or is not a file)" % (what, path))
        parent = os.path.dirname(self.dest.rstrip("/"))
        if not os.path.isdir(parent):
            self.fail("the parent directory %s of dest does not exist" % parent)
        fragments = []
        for path in p["config_fragments"]:
            with open(path) as handle:
                text = handle.read()
            try:
                parse_config(text, "config fragment %s" % path)
            except ValueError as e:
                self.fail(str(e))
            fragments.append((path, text))
        return fragments

    def run_cmd(self, argv, what):
        rc, out, err = self.module.run_command(argv, cwd=self.dest)
        if rc != 0:
            self.fail("%s failed (rc=%d): %s" % (what, rc, _tail(out + "\n" + err)), cmd=argv)
        return out

    def unpack(self):
        if os.path.lexists(self.dest):
            shutil.rmtree(self.dest)
        os.mkdir(self.dest, 0o755)
        self.run_cmd(
            ["tar", "-xf", self.params["src"], "--strip-components=1", "--no-same-owner"],
            "unpacking %s" % self.params["src"],
        )
        if not os.path.isfile(os.path.join(self.dest, "Makefile")):
            self.fail("%s holds no Makefile under its top directory: not a Linux source tarball?" % self.params["src"])

    def apply_patches(self):
        patches = self.params["patches"]
        for number, path in enumerate(patches, 1):
            argv = ["patch", "-p1", "--forward", "--batch", "--fuzz=0", "--no-backup-if-mismatch", "-i", path]
            rc, out, err = self.module.run_command([*argv, "--dry-run"], cwd=self.dest)
            if rc != 0:
                self.fail(
                    "patch %d of %d, %s, does not apply to %s%s: %s"
                    % (
                        number,
                        len(patches),
                        path,
                        self.params["src"],
                        " after the patches before it" if number > 1 else "",
                        _tail(out + "\n" + err),
                    ),
                    patch=path,
                )
            self.run_cmd(argv, "applying patch %d of %d, %s" % (number, len(patches), path))

    def configure(self, fragments):
        config = self.params["config"]
        dot_config = os.path.join(self.dest, ".config")
        if os.path.isabs(config):
            opener = lzma.open if config.endswith(".xz") else open
            with opener(config, "rb") as src, open(dot_config, "wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            self.run_cmd(["make", self.make_arg, config], "make %s" % config)
        if fragments:
            merge = os.path.join(self.dest, "scripts", "kconfig", "merge_config.sh")
            self.run_cmd(
                ["sh", merge, "-m", "-O", self.dest, dot_config] + [path for path, dummy in fragments],
                "merge_config.sh",
            )
        self.run_cmd(["make", self.make_arg, "olddefconfig"], "make olddefconfig")
        with open(dot_config) as handle:
            final = handle.read()
        missing = fragments_mismatches(fragments, final)
        if missing:
            self.fail(
                "the final .config lacks options the config fragments ask for (an unmet dependency or a typo? see the "
                "option's 'depends on' in Kconfig): %s"
                % "; ".join(
                    "%s=%s from %s, the .config has %s" % (option, want, path, got)
                    for path, option, want, got in missing
                ),
                missing=[
                    {"fragment": path, "option": option, "wanted": want, "got": got}
                    for path, option, want, got in missing
                ],
            )

    def kernelversion(self):
        try:
            with open(os.path.join(self.dest, "Makefile")) as handle:
                return makefile_kernelversion(handle.read(8192))
        except (IOError, OSError, ValueError) as e:
            self.fail("cannot read the kernel version of %s: %s" % (self.dest, e))

    def run(self):
        fragments = self.check_inputs()
        wanted = self.wanted()
        before = self.staged()
        result = {"changed": False, "dest": self.dest, "marker": self.marker, "kernelversion": None}
        before_text = "absent\n" if not os.path.isdir(self.dest) else "not staged (no marker)\n"
        if before is not None:
            before_text = json.dumps(before, indent=2, sort_keys=True) + "\n"
        if before is not None and before.get("id") == wanted["id"]:
            result["kernelversion"] = self.kernelversion()
        else:
            result["changed"] = True
            if not self.module.check_mode:
                self.unpack()
                self.apply_patches()
                self.configure(fragments)
                result["kernelversion"] = self.kernelversion()
                with open(self.marker, "w") as handle:
                    json.dump(wanted, handle, indent=2, sort_keys=True)
                    handle.write("\n")
        if self.module._diff:
            result["diff"] = {
                "before_header": self.marker,
                "after_header": self.marker,
                "before": before_text,
                "after": json.dumps(wanted, indent=2, sort_keys=True) + "\n",
            }
        self.module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec={
            "src": {"type": "path", "required": True},
            "dest": {"type": "path", "required": True},
            "id": {"type": "str", "required": True},
            "patches": {"type": "list", "elements": "path", "default": []},
            "config": {"type": "str", "required": True},
            "config_fragments": {"type": "list", "elements": "path", "default": []},
            "arch": {"type": "str", "default": "amd64", "choices": sorted(MAKE_ARCH)},
        },
        supports_check_mode=True,
    )
    Tree(module).run()


if __name__ == "__main__":
    main()
