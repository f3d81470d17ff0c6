"""The filters load through Ansible's collection loader: ansible-doc renders each one,
and a playbook on localhost gets the same answers as the Python functions."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.freifunk.wgmesh.plugins.filter.derive import wg_lladdr, wg_mac, wg_vni
from ansible_collections.freifunk.wgmesh.plugins.filter.mtu import wg_mtus
from ansible_collections.freifunk.wgmesh.plugins.filter.naming import wg_ifname, wg_ifnames

FILTERS = (
    "wg_mac",
    "wg_lladdr",
    "wg_vni",
    "wg_ifnames",
    "wg_ifname",
    "wg_mtus",
    "wg_pubkey",
    "wg_gateways",
    "wg_duplicates",
    "wg_ha_pair",
    "wg_ha_mac",
    "grub_entries",
    "kernel_suffix",
    "kernel_packages",
)
BIN = Path(sys.executable).parent


def _run(args, env, repo_root, tmp_path, stdin=None):
    env = dict(env, ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), ANSIBLE_REMOTE_TEMP=str(tmp_path / "tmp"))
    return subprocess.run(
        args, cwd=repo_root, env=env, input=stdin, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.parametrize("name", FILTERS)
def test_ansible_doc_renders(name, ansible_env, repo_root, tmp_path):
    r = _run(
        [BIN / "ansible-doc", "-t", "filter", "--json", "freifunk.wgmesh." + name], ansible_env, repo_root, tmp_path
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)["freifunk.wgmesh." + name]
    assert doc["doc"]["name"] == name
    assert doc["doc"]["short_description"]
    assert "_input" in doc["doc"]["options"]
    assert "freifunk.wgmesh." + name in doc["examples"]
    assert doc["return"]["_value"]["description"]
    # and the plain text rendering works too
    r = _run([BIN / "ansible-doc", "-t", "filter", "freifunk.wgmesh." + name], ansible_env, repo_root, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "freifunk.wgmesh." + name in r.stdout


def test_ansible_doc_lists_all_filters(ansible_env, repo_root, tmp_path):
    r = _run([BIN / "ansible-doc", "-t", "filter", "-l", "freifunk.wgmesh"], ansible_env, repo_root, tmp_path)
    assert r.returncode == 0, r.stderr
    listed = {line.split()[0] for line in r.stdout.splitlines() if line.strip()}
    assert listed == {"freifunk.wgmesh." + f for f in FILTERS}


PLAYBOOK = """\
---
- name: Use the freifunk.wgmesh filters
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    key: XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8=
    seed: 1f0b31cecdf980317f453b162ac476ee09cf9997b03e684d4f2f484e75d9cd26
  tasks:
    - name: Generate a private key once (a var with a lookup would run it on every use)
      ansible.builtin.set_fact:
        private_key: "{{ lookup('ansible.builtin.pipe', 'wg genkey') }}"

    - name: Write every filter's answer
      ansible.builtin.copy:
        dest: "{{ out }}"
        mode: "0600"
        content: "{{ answers | to_json }}"
      vars:
        answers:
          lladdr: "{{ key | freifunk.wgmesh.wg_lladdr }}"
          lladdr_gluon_128: "{{ key | freifunk.wgmesh.wg_lladdr('gluon', 128) }}"
          mac: "{{ key | freifunk.wgmesh.wg_mac(rule='gluon') }}"
          vni: "{{ seed | freifunk.wgmesh.wg_vni }}"
          ifnames: "{{ 'ffmuc_welt' | freifunk.wgmesh.wg_ifnames(['ffmuc_']) }}"
          ifname: "{{ 'ffmuc_welt' | freifunk.wgmesh.wg_ifname('ffmuc_', 'bat') }}"
          mtus: "{{ 1500 | freifunk.wgmesh.wg_mtus }}"
          mtus_v4: "{{ '1492' | freifunk.wgmesh.wg_mtus('ipv4') }}"
          private: "{{ private_key }}"
          public: "{{ private_key | freifunk.wgmesh.wg_pubkey }}"
"""


def test_playbook_uses_the_filters(ansible_env, repo_root, tmp_path):
    if shutil.which("wg") is None:
        pytest.skip("wireguard-tools `wg` is not installed")
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    out = tmp_path / "answers.json"
    r = _run(
        [
            *(BIN / "ansible-playbook", "-i", "localhost,", str(tmp_path / "play.yml"), "-e", "out=" + str(out)),
            # the copy module runs on localhost with this venv's Python, not whatever discovery finds
            *("-e", "ansible_python_interpreter=" + sys.executable),
        ],
        ansible_env,
        repo_root,
        tmp_path,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    got = json.loads(out.read_text())
    key = "XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8="
    assert got["lladdr"] == wg_lladdr(key)
    assert got["lladdr_gluon_128"] == wg_lladdr(key, "gluon", 128)
    assert got["mac"] == wg_mac(key, "gluon")
    assert got["vni"] == wg_vni("1f0b31cecdf980317f453b162ac476ee09cf9997b03e684d4f2f484e75d9cd26")
    assert isinstance(got["vni"], int)
    assert got["ifnames"] == wg_ifnames("ffmuc_welt", ["ffmuc_"])
    assert got["ifname"] == wg_ifname("ffmuc_welt", ["ffmuc_"], "bat")
    assert got["mtus"] == wg_mtus(1500)
    assert got["mtus_v4"] == wg_mtus(1492, "ipv4")
    wg_pub = subprocess.run(["wg", "pubkey"], input=got["private"] + "\n", capture_output=True, text=True, check=True)
    assert got["public"] == wg_pub.stdout.strip()


FAILING_PLAYBOOK = """\
---
- name: Feed the filters bad input
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    secret: "{{ secret_value }}"
  tasks:
    - name: Derive from a bad private key
      ansible.builtin.debug:
        msg: "{{ secret | freifunk.wgmesh.wg_pubkey }}"
"""


def test_playbook_error_names_the_problem_and_hides_the_secret(ansible_env, repo_root, tmp_path):
    (tmp_path / "fail.yml").write_text(FAILING_PLAYBOOK)
    # A valid-looking secret with a trailing newline: the filter refuses it.
    secret = "sEcReTsEcReTsEcReTsEcReTsEcReTsEcReTsEcReT0="
    r = _run(
        [BIN / "ansible-playbook", "-i", "localhost,", str(tmp_path / "fail.yml"), "-e", "secret_value='%s '" % secret],
        ansible_env,
        repo_root,
        tmp_path,
    )
    assert r.returncode != 0
    output = r.stdout + r.stderr
    assert "the private key is not a WireGuard key: has leading or trailing whitespace" in output
    assert secret not in output
    assert secret[:12] not in output


VAULT_PLAYBOOK = """\
---
- name: Public key of a vaulted private key
  hosts: localhost
  connection: local
  gather_facts: false
  vars_files:
    - vault_vars.yml
  tasks:
    - name: Show the public key
      ansible.builtin.debug:
        msg: "public={{ vaulted_key | freifunk.wgmesh.wg_pubkey }}"
"""


def test_vaulted_private_key(ansible_env, repo_root, tmp_path):
    if shutil.which("wg") is None:
        pytest.skip("wireguard-tools `wg` is not installed")
    private = subprocess.run(["wg", "genkey"], capture_output=True, text=True, check=True).stdout.strip()
    public = subprocess.run(["wg", "pubkey"], input=private + "\n", capture_output=True, text=True, check=True).stdout
    password = tmp_path / "vault-pass"
    password.write_text("test-only-password\n")
    vault = _run(
        [
            BIN / "ansible-vault",
            "encrypt_string",
            "--vault-password-file",
            str(password),
            "--stdin-name",
            "vaulted_key",
        ],
        dict(ansible_env),
        repo_root,
        tmp_path,
        stdin=private,
    )
    assert vault.returncode == 0, vault.stderr
    (tmp_path / "vault_vars.yml").write_text(vault.stdout)
    (tmp_path / "play.yml").write_text(VAULT_PLAYBOOK)
    r = _run(
        [
            BIN / "ansible-playbook",
            "-i",
            "localhost,",
            "--vault-password-file",
            str(password),
            str(tmp_path / "play.yml"),
        ],
        ansible_env,
        repo_root,
        tmp_path,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "public=" + public.strip() in r.stdout
    assert private not in r.stdout + r.stderr
