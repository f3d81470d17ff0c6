#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: freifunk.wgmesh contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: batman_adv_source
short_description: Stage a pinned, patched batman-adv source as a DKMS source archive on the controller
version_added: 0.2.0
description:
  - 'Meant to run on the controller (C(delegate_to: localhost)); the role freifunk.wgmesh.batman_adv copies the archive
    it makes to the gateways and builds it there with DKMS (docs/batman-adv.md).'
  - 'Fetches the source: a release tarball (O(url), a URL or a path on the controller, with a required O(checksum)),
    a git ref (O(repo), O(ref); the commit is returned) or a directory (O(path)). Tarballs and git mirrors are cached
    in O(cache_dir).'
  - Checks O(version) against C(BATADV_SOURCE_VERSION) in C(net/batman-adv/main.h) before any patch, then applies
    O(patches) in order with C(patch -p1 --batch --forward --fuzz=0); a patch that does not apply fails the module
    with its name and patch's output.
  - Recognizes the shape. An open-mesh release keeps its C(Makefile) (which takes C(KERNELPATH)) and gets C(wgmesh.mk)
    passing the O(config) options to it; an in-tree-shaped C(net/batman-adv) (the kernel's Kbuild C(Makefile) only)
    gets a top-level C(Makefile) that runs kbuild with C(M=) and the same options for the object list and the C code.
  - The fingerprint is the sha256 of a deterministic tar of the patched tree with those build files and the patch list
    (C(WGMESH-PATCHES)). The package version C(<version after patches>+wgmesh.<first 12 hex digits>) is written into
    C(main.h) (the loaded module's C(/sys/module/batman_adv/version)) and C(dkms.conf) (C(PACKAGE_VERSION)). A tarball,
    a git ref and a path with the same tree give the same fingerprint.
  - The result is a deterministic C(.tar.gz) (top directory C(batman-adv-<package version>)) in O(cache_dir)/staged.
author:
  - freifunk.wgmesh contributors (@freifunk-wgmesh)
requirements:
  - C(patch) when O(patches) are given, C(git) for O(kind=git), on the controller
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - It changes nothing but its cache on the machine it runs on; in check mode it reports the fingerprint it would
        stage without writing the archive. The role runs it with C(check_mode=false), so that check mode on the
        gateways can say what would be built.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
options:
  kind:
    description: Where the source comes from.
    type: str
    required: true
    choices: [tarball, git, path]
  url:
    description:
      - With O(kind=tarball), an http(s):// or file:// URL or a path on the controller. A single top directory
        (C(batman-adv-2022.3/)) is stripped.
    type: str
  checksum:
    description:
      - With O(kind=tarball), required, V(sha256:<64 hex digits>).
    type: str
  repo:
    description:
      - With O(kind=git), a repository URL or a path on the controller. Its root holds C(net/batman-adv/).
    type: str
  ref:
    description:
      - With O(kind=git), the tag, branch or commit to build. A full commit id that the cached mirror holds builds
        without fetching.
    type: str
  path:
    description:
      - With O(kind=path), a directory on the controller that holds C(net/batman-adv/); its C(.git) is left out.
    type: path
  version:
    description:
      - The pinned batman-adv version; must equal C(BATADV_SOURCE_VERSION) of the source before the patches.
    type: str
    required: true
  patches:
    description:
      - Patch files on the controller, applied in this order with C(patch -p1).
    type: list
    elements: path
    default: []
  config:
    description:
      - C(CONFIG_BATMAN_ADV_*) options (without C(CONFIG_BATMAN_ADV) itself) and whether each is on. Names are checked
        against the source's C(Kconfig) (or the list of Linux 6.1 without one).
    type: dict
    default: {}
  cache_dir:
    description:
      - Cache of downloads, git mirrors and staged archives.
    type: path
    required: true
  timeout:
    description: Seconds to wait for a download to answer.
    type: int
    default: 60
"""

EXAMPLES = r"""
- name: Stage batman-adv 2022.3 from the release tarball with one patch
  freifunk.wgmesh.batman_adv_source:
    kind: tarball
    url: https://downloads.open-mesh.org/batman/releases/batman-adv-2022.3/batman-adv-2022.3.tar.gz
    checksum: sha256:0000000000000000000000000000000000000000000000000000000000000000
    version: "2022.3"
    patches: [files/batman-adv/0001-ffmuc-tweak.patch]
    config: {CONFIG_BATMAN_ADV_BATMAN_V: true, CONFIG_BATMAN_ADV_NC: false}
    cache_dir: ~/.cache/freifunk.wgmesh/batman-adv
  delegate_to: localhost
  run_once: true
  register: staged
"""

RETURN = r"""
archive:
  description: The staged source archive on the controller (unpacks to C(batman-adv-<package_version>/)).
  returned: success
  type: str
  sample: /root/.cache/freifunk.wgmesh/batman-adv/staged/batman-adv-2022.3+wgmesh.0f1e2d3c4b5a.tar.gz
archive_sha256:
  description: sha256 of RV(archive).
  returned: success
  type: str
fingerprint:
  description: sha256 of the deterministic tar of the patched tree with its build files, before the version stamp.
  returned: success
  type: str
package_name:
  description: The DKMS package name.
  returned: success
  type: str
  sample: batman-adv
package_version:
  description: The DKMS package version, also the module's version string.
  returned: success
  type: str
  sample: 2022.3+wgmesh.0f1e2d3c4b5a
source_version:
  description: The pinned version (the source's before the patches).
  returned: success
  type: str
patched_version:
  description: The source's version string after the patches.
  returned: success
  type: str
shape:
  description: V(release) or V(in-tree).
  returned: success
  type: str
commit:
  description: The commit built, with O(kind=git); V(null) otherwise.
  returned: success
  type: str
patches:
  description: The patch series applied, in order (name and sha256).
  returned: success
  type: list
  elements: dict
config:
  description: The options built with.
  returned: success
  type: dict
"""

import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.urls import open_url  # noqa: E402

from ansible_collections.freifunk.wgmesh.plugins.module_utils._batman_adv_source import (  # noqa: E402
    StageError,
    stage,
)


class Stager:
    def __init__(self, module):
        self.module = module
        self.params = dict(module.params)
        self.cache_dir = module.params["cache_dir"]

    def _opener(self, url):
        return open_url(url, timeout=self.params["timeout"], http_agent="freifunk.wgmesh batman_adv_source")

    def _require(self):
        kind = self.params["kind"]
        needed = {"tarball": ["url", "checksum"], "git": ["repo", "ref"], "path": ["path"]}[kind]
        missing = [name for name in needed if not self.params.get(name)]
        if missing:
            self.module.fail_json(msg="kind=%s needs %s" % (kind, " and ".join(missing)))

    def run(self):
        self._require()
        params = dict(self.params)
        cache_dir = self.cache_dir
        scratch = None
        if self.module.check_mode:
            # Stage into a throw-away cache that starts from the real one's downloads.
            scratch = tempfile.mkdtemp(prefix="batman-adv-check.")
            for sub in ("tarballs", "git"):
                if os.path.isdir(os.path.join(self.cache_dir, sub)):
                    shutil.copytree(os.path.join(self.cache_dir, sub), os.path.join(scratch, sub), symlinks=True)
            cache_dir = scratch
        try:
            result = stage(params, cache_dir, opener=self._opener)
        except StageError as exc:
            self.module.fail_json(msg=str(exc))
        finally:
            if scratch:
                shutil.rmtree(scratch, ignore_errors=True)
        if scratch:
            real = os.path.join(self.cache_dir, "staged", os.path.basename(result["archive"]))
            result["changed"] = not os.path.isfile(real)
            result["archive"] = real
        self.module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec={
            "kind": {"type": "str", "required": True, "choices": ["tarball", "git", "path"]},
            "url": {"type": "str"},
            "checksum": {"type": "str"},
            "repo": {"type": "str"},
            "ref": {"type": "str"},
            "path": {"type": "path"},
            "version": {"type": "str", "required": True},
            "patches": {"type": "list", "elements": "path", "default": []},
            "config": {"type": "dict", "default": {}},
            "cache_dir": {"type": "path", "required": True},
            "timeout": {"type": "int", "default": 60},
        },
        supports_check_mode=True,
    )
    Stager(module).run()


if __name__ == "__main__":
    main()
