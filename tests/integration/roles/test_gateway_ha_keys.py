"""An HA pair's shared WireGuard key, through the gateway role's own key tasks (docs/ha.md).

ansible-playbook runs the role's preflight and key tasks (tasks_from) for three gateways,
all this host (connection local), each with its own key directory: gw1a and gw1b are an HA
pair, gw2 a single gateway. Real files, the real wg_keypair, slurp and --diff -vvv output;
only the SSH hop between the members is local here (Molecule's ha scenario has real hosts).
"""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
DOMAINS = [
    {
        "name": "ffmuc_welt",
        "prefix": "ffmuc_",
        "seed": "1f0b31cecdf980317f453b162ac476ee09cf9997b03e684d4f2f484e75d9cd26",
        "port": 40011,
    },
    {
        "name": "ffmuc_uml",
        "prefix": "ffmuc_",
        "seed": "2f0b31cecdf980317f453b162ac476ee09cf9997b03e684d4f2f484e75d9cd26",
        "port": 40012,
    },
]
MEMBER = {
    "wgmesh_gateway_identity": "gw1",
    "wgmesh_gateway_external_name": "gw1.example.net",  # the pair's virtual address
    "wgmesh_ha_vips": ["192.0.2.10/24"],
    "wgmesh_ha_virtual_router_id": 51,
}
VAULT_KEY = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
VAULT_PUBLIC = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
PLAY = [
    {
        "name": "The gateway role's key tasks",
        "hosts": "gateways",
        "gather_facts": False,
        # as site.yml's preflight: one host's failure stops every host before anything changes
        "any_errors_fatal": True,
        "tasks": [
            {"ansible.builtin.include_role": {"name": "freifunk.wgmesh.gateway", "tasks_from": "preflight"}},
            {"ansible.builtin.include_role": {"name": "freifunk.wgmesh.gateway", "tasks_from": "keys"}},
            {
                "ansible.builtin.copy": {
                    "content": "{{ _gateway_pubkeys | to_json }}",
                    "dest": "{{ out }}",
                    "mode": "0600",
                },
                "delegate_to": "localhost",
                "run_once": True,
                "check_mode": False,
                "diff": False,
                "changed_when": False,  # the test's own file: not part of the role's changes
            },
        ],
    }
]


class Gateways:
    def __init__(self, tmp_path: Path, play: list | None = None):
        self.tmp = tmp_path
        self.runs = 0
        self.play_tasks = play or PLAY

    def key_file(self, host: str, wg: str = "wg-welt") -> Path:
        return self.tmp / "keys" / host / f"{wg}.key"

    def play(self, *extra: str, host_vars: dict | None = None):
        """ansible-playbook --diff -vvv; returns (rc, output, host -> interface -> public key or None)."""
        self.runs += 1
        local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
        hosts = {
            "gw1a": {**local, **MEMBER, "wgmesh_ha_priority": 150},
            "gw1b": {**local, **MEMBER, "wgmesh_ha_priority": 100},
            "gw2": dict(local),
        }
        for host, variables in hosts.items():
            variables["gateway_key_dir"] = str(self.tmp / "keys" / host)
            variables.update((host_vars or {}).get(host, {}))
        group = {
            "wgmesh_domains": DOMAINS,
            "gateway_batman": False,
            "wgmesh_wireguard_userspace": True,
            "out": str(self.tmp / f"pubkeys-{self.runs}.json"),
        }
        inventory = {"all": {"vars": group, "children": {"gateways": {"hosts": hosts}}}}
        (self.tmp / "inventory.yml").write_text(yaml.safe_dump(inventory))
        (self.tmp / "play.yml").write_text(yaml.safe_dump(self.play_tasks))
        env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
        command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(self.tmp / "inventory.yml")]
        command += [str(self.tmp / "play.yml"), "--diff", "-vvv", *extra]
        proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False, cwd=self.tmp)
        out = self.tmp / f"pubkeys-{self.runs}.json"
        keys = yaml.safe_load(out.read_text()) if out.exists() else None
        return proc.returncode, proc.stdout + proc.stderr, keys


def said(text: str, output: str) -> bool:
    """Whether the output says `text`; the YAML callback folds long messages at spaces."""
    return text in " ".join(output.split())


def wg_pubkey(private_key: str) -> str:
    return subprocess.run(
        ["wg", "pubkey"], input=private_key, capture_output=True, text=True, check=True
    ).stdout.strip()


def secrets_in(output: str, *files: Path) -> list[str]:
    """Every private key of the given files, and its base64 form (slurp's), that the output shows."""
    found = []
    for path in files:
        if path.exists():
            key = path.read_text().strip()
            for form in (key, base64.b64encode((key + "\n").encode()).decode()):
                if form in output:
                    found.append(f"{path}: {form[:6]}...")
    return found


def test_a_pair_gets_one_key_made_on_its_first_member_and_no_log_shows_it(tmp_path):
    gateways = Gateways(tmp_path)
    rc, output, _keys = gateways.play("--check")
    assert rc == 0, output[-4000:]
    assert not (tmp_path / "keys" / "gw1a" / "wg-welt.key").exists(), "check mode wrote a key"
    assert said("gw1b wg-welt: pair gw1 key copied from gw1a, public key made on gw1a in this run", output)

    rc, output, keys = gateways.play()
    assert rc == 0, output[-4000:]
    files = [gateways.key_file(h, wg) for h in ("gw1a", "gw1b", "gw2") for wg in ("wg-welt", "wg-uml")]
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for wg in ("wg-welt", "wg-uml"):
        shared = gateways.key_file("gw1a", wg).read_text()
        assert gateways.key_file("gw1b", wg).read_text() == shared, f"{wg}: the members' keys differ"
        assert gateways.key_file("gw2", wg).read_text() != shared
        assert keys["gw1a"][wg] == keys["gw1b"][wg] == wg_pubkey(shared)
        assert keys["gw2"][wg] == wg_pubkey(gateways.key_file("gw2", wg).read_text())
    assert secrets_in(output, *files) == []
    assert said(f"gw1b wg-welt: pair gw1 key copied from gw1a, public key {keys['gw1a']['wg-welt']} (changed)", output)

    rc, output, again = gateways.play()
    assert rc == 0, output[-4000:]
    assert again == keys
    for host in ("gw1a", "gw1b", "gw2"):
        assert f"{host}" in output and "changed=0" in output.split(f"\n{host} ")[-1].splitlines()[0]
    assert secrets_in(output, *files) == []


def test_a_rebuilt_member_gets_the_key_its_partner_holds(tmp_path):
    gateways = Gateways(tmp_path)
    assert gateways.play()[0] == 0
    known = gateways.key_file("gw1b").read_text()
    for wg in ("wg-welt", "wg-uml"):
        gateways.key_file("gw1a", wg).unlink()  # gw1a rebuilt from scratch: the nodes know gw1b's key
    rc, output, keys = gateways.play()
    assert rc == 0, output[-4000:]
    assert gateways.key_file("gw1a").read_text() == known
    assert keys["gw1a"]["wg-welt"] == keys["gw1b"]["wg-welt"] == wg_pubkey(known)
    assert said("gw1a wg-welt: pair gw1 key copied from gw1b", output)


def test_members_with_different_keys_stop_the_run_naming_public_keys_only(tmp_path):
    gateways = Gateways(tmp_path)
    assert gateways.play()[0] == 0
    other = subprocess.run(["wg", "genkey"], capture_output=True, text=True, check=True).stdout
    gateways.key_file("gw1b").write_text(other)
    rc, output, _keys = gateways.play()
    assert rc != 0
    assert gateways.key_file("gw1b").read_text() == other, "the differing key was replaced"
    assert wg_pubkey(other) in output and wg_pubkey(gateways.key_file("gw1a").read_text()) in output
    assert said("remove the file on the member whose key should go", output)
    files = [gateways.key_file(h, wg) for h in ("gw1a", "gw1b") for wg in ("wg-welt", "wg-uml")]
    assert secrets_in(output, *files) == []


def test_the_key_from_vault_goes_to_both_members_and_not_into_the_output(tmp_path):
    gateways = Gateways(tmp_path)
    vault = {"wgmesh_gateway_private_keys": {"ffmuc_welt": VAULT_KEY}}
    rc, output, keys = gateways.play(host_vars={"gw1a": vault, "gw1b": vault})
    assert rc == 0, output[-4000:]
    assert gateways.key_file("gw1a").read_text() == gateways.key_file("gw1b").read_text() == VAULT_KEY + "\n"
    assert keys["gw1a"]["wg-welt"] == keys["gw1b"]["wg-welt"] == VAULT_PUBLIC
    # the domain without a vault key is shared by copying
    assert gateways.key_file("gw1a", "wg-uml").read_text() == gateways.key_file("gw1b", "wg-uml").read_text()
    assert VAULT_KEY not in output
    assert secrets_in(output, gateways.key_file("gw1a", "wg-uml")) == []


def test_members_stating_different_vault_keys_fail_in_preflight(tmp_path):
    gateways = Gateways(tmp_path)
    rc, output, _keys = gateways.play(
        host_vars={"gw1a": {"wgmesh_gateway_private_keys": {"ffmuc_welt": VAULT_KEY}}, "gw1b": {}}
    )
    assert rc != 0
    assert said("gateway_private_keys (wgmesh_gateway_private_keys) gives both the same key", output)
    assert VAULT_PUBLIC in output and VAULT_KEY not in output
    assert not (tmp_path / "keys" / "gw1a" / "wg-welt.key").exists(), "a key was written before preflight failed"


def test_members_serving_other_ports_fail_in_preflight(tmp_path):
    gateways = Gateways(tmp_path)
    other_port = [dict(DOMAINS[0], port=40099), DOMAINS[1]]
    rc, output, _keys = gateways.play(host_vars={"gw1b": {"wgmesh_domains": other_port}})
    assert rc != 0
    assert said("an HA member serves the same domains on the same ports as its partner", output)
    assert said("ffmuc_welt:40099", output)
    assert not (tmp_path / "keys" / "gw1a").exists(), "a key was written before preflight failed"
