# Copyright: freifunk.wgmesh contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters kernel_suffix, kernel_packages; documented in the adjacent <filter>.yml files."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.freifunk.wgmesh.plugins.module_utils._kernel import packages, suffix


def kernel_suffix(identity, label="wgmesh"):
    """The LOCALVERSION that names a patch set: -<label>.<fp8>."""
    try:
        return suffix(identity, label)
    except ValueError as e:
        raise AnsibleFilterError(str(e)) from None


def kernel_packages(release, arch="amd64", revision="1"):
    """Package and .deb file names `make bindeb-pkg` gives a kernel release."""
    try:
        return packages(release, arch, revision)
    except ValueError as e:
        raise AnsibleFilterError(str(e)) from None


class FilterModule(object):
    def filters(self):
        return {"kernel_suffix": kernel_suffix, "kernel_packages": kernel_packages}
