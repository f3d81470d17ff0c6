"""hack/check_host_commands.py: finds what the host runs and checks it against system-deps.txt.

Each test builds a small repository tree of its own in tmp_path; the last one checks the real
checkout, which is what `make lint` does.
"""

import importlib.util
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
_spec = importlib.util.spec_from_file_location("check_host_commands", REPO_ROOT / "hack" / "check_host_commands.py")
check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check)


def make_repo(root: Path, files: dict[str, str], deps: str = "", commands: str = "", allowed: str = "") -> Path:
    for name, text in {
        "hack/system-deps.txt": deps,
        "hack/host-commands.txt": commands,
        "hack/host-commands-allowed.txt": allowed,
        "Makefile": "",
        **files,
    }.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    for directory in ("tests", "bench", "molecule", "tests/images/container"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    return root


PROBE = """\
    import subprocess
    subprocess.run(["modprobe", "wireguard"], check=False)
"""


def test_modprobe_without_kmod_is_caught(tmp_path):
    repo = make_repo(tmp_path, {"tests/probe.py": PROBE}, deps="iproute2\n", commands="modprobe kmod\nmake make\n")
    found = check.problems(repo)
    assert found == [
        "make: its package make is not in hack/system-deps.txt, run at Makefile",
        "modprobe: its package kmod is not in hack/system-deps.txt, run at tests/probe.py:2",
    ]
    (repo / "hack/system-deps.txt").write_text("kmod\nmake\n")
    assert check.problems(repo) == []
    assert check.main(["check", str(repo)]) == 0


def test_a_command_missing_from_the_map_is_caught(tmp_path, capsys):
    repo = make_repo(tmp_path, {"tests/probe.py": PROBE}, deps="make\n", commands="make make\n")
    assert check.main(["check", str(repo)]) == 1
    assert "modprobe: not in hack/host-commands.txt" in capsys.readouterr().err


def test_python_calls_that_run_a_program():
    source = textwrap.dedent("""\
        import shutil, subprocess, sys
        QEMU = "qemu-system-x86_64"
        shutil.which("mosquitto")
        run("ip", "link")
        gw.exec("wg", "show")
        subprocess.check_output("openssl rand 4", shell=True)
        argv = [QEMU, "-m", "256"]
        subprocess.run([sys.executable, "-c", "pass"])  # the venv's Python: not a Debian command
        asyncio.run(main())
        print("ls")
    """)
    assert [c for c, dummy in check.python_commands(Path("x.py"), source)] == [
        "mosquitto", "ip", "wg", "openssl", "qemu-system-x86_64",
    ]  # fmt: skip


def test_shell_scripts_first_words_only():
    script = textwrap.dedent("""\
        #!/bin/sh
        set -eu
        die() { echo "$*" >&2; exit 1; }
        command -v debootstrap >/dev/null || die "no debootstrap"
        out=$(awk '
            BEGIN { print "not-a-command" }
        ' file | sort -u)
        for unit in a.service \\
            b.service; do
            ln -s /dev/null "$unit"
        done
        case $x in "I: "*) ;; *) say "$x" ;; esac  # a case arm runs a command
        python3 - <<'EOF'
        import not_a_command
        EOF
        grep -o x /proc/mounts | xargs -r -n1 umount -l  # a comment: rm
        ${1:?usage: script ROOTFS}
        echo "$((SECONDS - 1)) s"
        [ "$(id -u)" -eq 0 ] || say "run as root, not $(whoami) in \\"$(pwd)\\""
    """)
    assert [c for c, dummy in check.shell_commands(script)] == [
        "set", "echo", "exit", "debootstrap", "awk", "sort", "ln", "say", "python3", "grep", "xargs", "umount",
        "echo", "id", "say", "whoami", "pwd",
    ]  # fmt: skip


def test_makefile_recipes():
    makefile = textwrap.dedent("""\
        BIN := $(CURDIR)/.venv/bin
        PYTHON ?= python3
        PYVER = $(shell $(BIN)/python -c 'import sys')
        venv:
        \t$(PYTHON) -m venv .venv
        \t$(BIN)/pip install -r x.txt
        \t@grep -hE x $(MAKEFILE_LIST) | awk -F: '{print $$1}'
        \tcd $(SANITY_TREE) && git init -q
        \tinstall -D x $(HOME)/y_$(subst .,_,$(PYVER)).py
        \t{ echo x; $(BIN)/pip freeze | grep -v pip; } > out
    """)
    assert [c for c, dummy in check.makefile_commands(makefile)] == [
        "python3", "grep", "awk", "cd", "git", "install", "echo", "grep",
    ]  # fmt: skip


def test_molecule_localhost_tasks_count_instance_tasks_and_tests_do_not(tmp_path):
    repo = make_repo(
        tmp_path,
        {
            "molecule/s/create.yml": """\
                - hosts: localhost
                  tasks:
                    - ansible.builtin.command:
                        argv: [podman, image, exists, x]
                    - ansible.builtin.command:
                        argv: ["{{ ansible_playbook_python }}", vmctl.py]
            """,
            "molecule/s/converge.yml": """\
                - hosts: all
                  tasks:
                    - ansible.builtin.command: networkctl reload
                    - ansible.builtin.shell:
                        cmd: set -o pipefail && find src | tar -c -f x.tar
                      delegate_to: localhost
            """,
            "molecule/s/molecule.yml": """\
                dependency:
                  name: shell
                  command: python3 ${MOLECULE_PROJECT_DIRECTORY}/build.py
            """,
            "molecule/s/tests/test_vm.py": 'host.run("networkctl", "status")\n',
        },
    )
    assert sorted(check.host_commands(repo)) == ["find", "make", "podman", "python3", "set", "tar"]


def test_task_files_count_where_they_are_included(tmp_path):
    repo = make_repo(
        tmp_path,
        {
            "molecule/s/prepare.yml": """\
                - hosts: all
                  tasks:
                    - ansible.builtin.import_tasks: tasks/on_instance.yml
                - hosts: localhost
                  tasks:
                    - ansible.builtin.include_tasks: tasks/on_host.yml
            """,
            "molecule/s/tasks/on_instance.yml": "- ansible.builtin.command: mosquitto_passwd -b f u p\n",
            "molecule/s/tasks/on_host.yml": "- ansible.builtin.command: qemu-img create x\n",
            "molecule/s/tasks/nobody.yml": "- ansible.builtin.command: debootstrap bookworm x\n",
        },
    )
    # Included only by a play on the instances: not the host's. Nobody's: counted, to be safe.
    assert sorted(check.host_commands(repo)) == ["debootstrap", "make", "qemu-img"]


def test_a_malformed_map_line_names_file_and_line(tmp_path):
    repo = make_repo(tmp_path, {}, commands="# map\nip iproute2 extra\n")
    with pytest.raises(ValueError, match=r"host-commands.txt:2: expected `command \[package\]`"):
        check.problems(repo)


def test_this_repository_installs_every_command_it_runs():
    assert check.problems(REPO_ROOT) == []
