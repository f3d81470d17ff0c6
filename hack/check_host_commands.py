# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fail when the host runs a command that hack/system-deps.txt does not install.

A fresh Debian 12 machine once failed `make test` because `modprobe` (kmod) was
run by a test but installed by nothing. This check, run by `make lint`, finds
the commands the host runs and looks each up in two checked-in files:

- hack/host-commands.txt: `command package` per line. The package is a Debian
  package that hack/system-deps.txt must list, or `@venv` for a tool that
  `make venv` installs from requirements/test.txt.
- hack/host-commands-allowed.txt: shell builtins and commands of Debian's
  Essential packages (coreutils, grep, sed, ...), present on every Debian.

Where it looks (what runs on the host):
- Python in tests/, bench/, hack/, molecule/: calls such as subprocess.run,
  Popen, check_output and the tests' own run()/exec()/ns() helpers whose first
  argument is a literal ("ip", ["modprobe", ...]), `shutil.which("x")`, and
  lists assigned to argv/cmd whose first item is a literal.
- The Makefile's recipe lines; shell scripts in hack/ and tests/images/container/.
- Molecule: `command`/`shell` tasks of plays on localhost or delegated to it,
  and a scenario's shell `dependency` command.

Not scanned, because their commands run inside a VM or container, whose image
installs its own packages: molecule/*/tests/ and molecule/site/survival/ (testinfra runs commands on the
instance), molecule/shared/vm/rootfs/ (files copied into the VM image), a scenario's files/
(copied into its instances and run there), and
tasks on Molecule instances. The shell scan is a conservative regex: it reads
only the first word of each simple command, so a command hidden in a variable
is not seen.

Usage: python hack/check_host_commands.py [REPO_ROOT]
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import yaml

PYTHON_DIRS = ("tests", "bench", "hack", "molecule")
SHELL_DIRS = ("hack", "tests/images/container")
# Commands in these run inside a VM or container, not on the host (see above).
INSIDE_INSTANCES = (
    "molecule/*/tests/*",
    "molecule/site/survival/*",
    "molecule/shared/vm/rootfs/*",
    "molecule/*/files/*",
)
# Call names whose first argument is the program to run.
RUNNERS = {
    "run",
    "Popen",
    "call",
    "check_call",
    "check_output",
    "create_subprocess_exec",
    "exec",
    "ns",
    "which",
    "execvp",
}
ARGV_NAMES = re.compile(r"^(argv|cmd|command)$")
COMMAND_WORD = re.compile(r"^[A-Za-z][A-Za-z0-9_.+-]*$")
SHELL_KEYWORDS = {
    "if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done",
    "case", "esac", "in", "function", "!", "{", "}", "time",
}  # fmt: skip
# Command separators: a new simple command starts after each of these.
SHELL_SPLIT = re.compile(r"\$\(|`|&&|\|\||[;|()&]")


def read_table(path: Path) -> dict[str, str]:
    """`word [value]` per line; # starts a comment. Returns word -> value ('' if none)."""
    table = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if len(words) > 2:
            raise ValueError(f"{path}:{number}: expected `command [package]`, got {raw!r}")
        table[words[0]] = words[1] if len(words) == 2 else ""
    return table


def _literal_program(node: ast.AST, constants: dict[str, str]) -> str | None:
    """The program of a call's first argument: "ip", ["ip", ...], ("ip", ...), "ip link", QEMU."""
    if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
        node = node.elts[0]
    if isinstance(node, ast.Name):
        value = constants.get(node.id)
    elif isinstance(node, ast.Constant) and isinstance(node.value, str):
        value = node.value
    else:
        return None
    return value.split()[0] if value and value.strip() else None


def python_commands(path: Path, text: str) -> list[tuple[str, int]]:
    tree = ast.parse(text, filename=str(path))
    # Module-level NAME = "program" (vmctl.py's QEMU = "qemu-system-x86_64").
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    found = []
    for node in ast.walk(tree):
        program = None
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in RUNNERS:
                program = _literal_program(node.args[0], constants)
        elif (
            isinstance(node, ast.Assign)
            and isinstance(node.value, (ast.List, ast.Tuple))
            and any(isinstance(t, ast.Name) and ARGV_NAMES.match(t.id) for t in node.targets)
        ):
            program = _literal_program(node.value, constants)
        if program:
            found.append((program, node.lineno))
    return sorted(found, key=lambda item: item[1])


def shell_logical_lines(text: str):
    """(first line number, text) of each logical shell line.

    Quoted strings become "" (they are data, and single-quoted awk programs span
    lines), except the command substitutions $(...) inside double quotes, which
    run; backslash-newline joins lines; comments and heredoc bodies go.
    """
    lines, current, start, number = [], [], 1, 1
    quote = None  # the quote we are inside: ', " or None
    outer = []  # per open $(...) inside double quotes: [its parenthesis depth]
    heredoc_end = pending_heredoc = None
    i = 0
    while i < len(text):
        char = text[i]
        if heredoc_end is not None:  # skip whole lines up to the terminator
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            if text[i:end].strip() == heredoc_end:
                heredoc_end = None
            number += 1
            i = end + 1
            continue
        if char == "\n":
            number += 1
        if quote == '"' and text.startswith("$(", i):
            outer.append([1])
            quote = None
            current.append(" $(")
            i += 2
            continue
        if quote:
            if char == "\\" and quote == '"':
                i += 2
                continue
            if char == quote:
                quote = None
            i += 1
            continue
        if outer and char in "()":
            outer[-1][0] += 1 if char == "(" else -1
            if outer[-1][0] == 0:  # back inside the double quotes
                outer.pop()
                quote = '"'
                current.append(") ")
                i += 1
                continue
        heredoc = re.match(r"<<-?\s*(['\"]?)(\w+)\1", text[i:]) if char == "<" else None
        if heredoc and text[i - 1 : i] != "<":
            pending_heredoc = heredoc.group(2)
            i += heredoc.end()
            continue
        if char in "'\"":
            quote = char
            current.append('""')
        elif char == "\\" and text[i + 1 : i + 2] == "\n":
            current.append(" ")
            number += 1
            i += 1
        elif char == "#" and (not current or current[-1][-1:].isspace()):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        elif char == "\n":
            lines.append((start, "".join(current)))
            heredoc_end, pending_heredoc = pending_heredoc, None
            current, start = [], number
        else:
            current.append(char)
        i += 1
    lines.append((start, "".join(current)))
    return lines


def shell_command_words(line: str, functions: set[str] = frozenset()) -> list[str]:
    """First words of the simple commands in one logical line of shell (quotes already removed)."""
    words = []
    line = re.sub(r"\$\{[^}]*\}", "", line)  # ${1:?usage: ...} is not a command
    line = re.sub(r"\$\(\(.*?\)\)", "0", line)  # nor is arithmetic, $((SECONDS - started))
    for part in SHELL_SPLIT.split(line):
        tokens = part.split()
        if tokens and tokens[0] in ("for", "case"):
            continue  # `for x in a b`, `case $x in`: no command there
        while tokens and (tokens[0] in SHELL_KEYWORDS or re.match(r"^\w+=", tokens[0])):
            tokens.pop(0)  # keywords and VAR=value prefixes
        if len(tokens) > 1 and tokens[0] in ("command", "exec"):
            tokens.pop(0)
            if tokens[0] == "-v" and len(tokens) > 1:
                tokens.pop(0)
        if not tokens or tokens[0] in functions or tokens[0].endswith(")"):
            continue  # case patterns end in ")"
        if COMMAND_WORD.match(tokens[0]):
            words.append(tokens[0])
        if tokens[0] == "xargs":  # xargs [-options] program ...: the program runs too
            program = next((t for t in tokens[1:] if not t.startswith("-")), "")
            if COMMAND_WORD.match(program):
                words.append(program)
    return words


def shell_commands(text: str) -> list[tuple[str, int]]:
    functions = set(re.findall(r"^\s*(\w[\w-]*)\s*\(\)", text, re.MULTILINE))
    return [(w, n) for n, line in shell_logical_lines(text) for w in shell_command_words(line, functions)]


def _expand_make(text: str, variables: dict[str, str]) -> str:
    """Expand $(VAR) one level at a time; functions and unknown variables become a path.

    A path (it has a "/") is never taken for a Debian command: $(BIN)/pip is the venv's pip,
    hack/install-system-deps is the project's own script.
    """
    for dummy in range(5):
        text = _drop_make_functions(text)
        text = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), "/unknown"), text)
    return text


def _drop_make_functions(text: str) -> str:
    """$(shell ...), $(subst ...), $(dir ...) (nested parentheses included) -> a path."""
    while (start := text.find("$(")) >= 0 and re.match(r"\$\([a-z]+[ \t]", text[start:]):
        depth, end = 0, start + 1
        for end in range(start + 1, len(text)):
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            if depth == 0:
                break
        text = text[:start] + "/make-function" + text[end + 1 :]
    return text


def makefile_commands(text: str) -> list[tuple[str, int]]:
    variables = {"CURDIR": "/repo"}
    for name, value in re.findall(r"^(\w+)\s*[?:]?=[ \t]*(.*)$", text, re.MULTILINE):
        variables.setdefault(name, value.strip())
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        match = re.match(r"^\t[@+-]*(.*)", line)
        if not match:
            continue
        # $$ is the shell's $: keep it out of make's expansion.
        shell = _expand_make(match.group(1).replace("$$", "\0"), variables).replace("\0", "$")
        for logical_number, logical in shell_logical_lines(shell):
            found += [(w, number + logical_number - 1) for w in shell_command_words(logical)]
    return found


def _on_localhost(play: dict, task: dict) -> bool:
    return task.get("delegate_to") == "localhost" or play.get("hosts") == "localhost"


def _task_commands(task: dict) -> list[str]:
    texts = []
    for module in ("command", "shell", "ansible.builtin.command", "ansible.builtin.shell"):
        args = task.get(module)
        if isinstance(args, dict):
            argv = args.get("argv")
            if isinstance(argv, list) and argv:
                texts.append(str(argv[0]))
            elif args.get("cmd"):
                texts.append(str(args["cmd"]))
        elif isinstance(args, str):
            texts.append(args)
    words = []
    for text in texts:
        text = re.sub(r"\{\{.*?\}\}", "", text)  # Jinja: a variable, not a literal command
        for line in text.splitlines():
            words += shell_command_words(line)
    return words


def _walk_tasks(tasks):
    for task in tasks or []:
        if isinstance(task, dict):
            yield task
            for key in ("block", "rescue", "always"):
                yield from _walk_tasks(task.get(key))


INCLUDES = ("include_tasks", "import_tasks", "ansible.builtin.include_tasks", "ansible.builtin.import_tasks")


def _included(task: dict) -> str | None:
    for key in INCLUDES:
        value = task.get(key)
        if isinstance(value, dict):
            value = value.get("file")
        if isinstance(value, str):
            return Path(value).name
    return None


def instance_task_files(root: Path) -> set[str]:
    """Names of task files that only plays on the instances include (never localhost's)."""
    on_host, on_instance = set(), set()
    for path in (root / "molecule").rglob("*.yml"):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            continue
        for play in data:
            if not isinstance(play, dict) or "hosts" not in play:
                continue
            for section in ("pre_tasks", "tasks", "post_tasks", "handlers"):
                for task in _walk_tasks(play.get(section)):
                    name = _included(task)
                    if name:
                        (on_host if _on_localhost(play, task) else on_instance).add(name)
    return on_instance - on_host


def molecule_commands(path: Path, text: str, instance_only: frozenset[str] = frozenset()) -> list[tuple[str, int]]:
    data = yaml.safe_load(text)
    found = []
    if path.name == "molecule.yml" and isinstance(data, dict):
        dependency = data.get("dependency") or {}
        if dependency.get("name") == "shell" and dependency.get("command"):
            found += [(w, 0) for w in shell_command_words(str(dependency["command"]))]
        return found
    if not isinstance(data, list):
        return found
    # Task files (tasks/*.yml) run in the play that includes them: the host's,
    # unless only plays on the instances include them (or nothing does: then
    # count them as the host's, to be safe).
    if path.name in instance_only and not any("hosts" in item for item in data if isinstance(item, dict)):
        return found
    plays = (
        data
        if any("hosts" in item for item in data if isinstance(item, dict))
        else [{"hosts": "localhost", "tasks": data}]
    )
    for play in plays:
        for section in ("pre_tasks", "tasks", "post_tasks", "handlers"):
            for task in _walk_tasks(play.get(section)):
                if _on_localhost(play, task):
                    found += [(w, 0) for w in _task_commands(task)]
    return found


def _inside_instance(relative: Path) -> bool:
    return any(relative.match(pattern) for pattern in INSIDE_INSTANCES)


def _is_shell_script(path: Path) -> bool:
    try:
        first = path.read_text(encoding="utf-8").split("\n", 1)[0]
    except (UnicodeDecodeError, OSError):
        return False
    return first.startswith("#!") and re.search(r"\b(sh|bash)\b", first) is not None


def host_commands(root: Path) -> dict[str, list[str]]:
    """command -> the places (file:line) that run it on the host."""
    places: dict[str, list[str]] = {}

    def add(path: Path, found):
        for command, line in found:
            where = f"{path.relative_to(root)}:{line}" if line else str(path.relative_to(root))
            places.setdefault(command, []).append(where)

    for directory in PYTHON_DIRS:
        for path in sorted((root / directory).rglob("*.py")):
            if not _inside_instance(path.relative_to(root)):
                add(path, python_commands(path, path.read_text(encoding="utf-8")))
    for directory in SHELL_DIRS:
        for path in sorted((root / directory).iterdir()):
            if path.is_file() and _is_shell_script(path):
                add(path, shell_commands(path.read_text(encoding="utf-8")))
    makefile = root / "Makefile"
    add(makefile, [("make", 0), *makefile_commands(makefile.read_text(encoding="utf-8"))])
    instance_only = frozenset(instance_task_files(root))
    for path in sorted((root / "molecule").rglob("*.yml")):
        if not _inside_instance(path.relative_to(root)):
            add(path, molecule_commands(path, path.read_text(encoding="utf-8"), instance_only))
    return places


def problems(root: Path) -> list[str]:
    command_map = read_table(root / "hack" / "host-commands.txt")
    allowed = read_table(root / "hack" / "host-commands-allowed.txt")
    deps = read_table(root / "hack" / "system-deps.txt")
    found = []
    for command, places in sorted(host_commands(root).items()):
        if command in allowed:
            continue
        where = ", ".join(places[:3]) + (f" (+{len(places) - 3} more)" if len(places) > 3 else "")
        package = command_map.get(command)
        if not package:
            found.append(f"{command}: not in hack/host-commands.txt (`command package`), run at {where}")
        elif package != "@venv" and package not in deps:
            found.append(f"{command}: its package {package} is not in hack/system-deps.txt, run at {where}")
    return found


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else Path(__file__).resolve().parents[1])
    found = problems(root)
    for problem in found:
        print(f"host commands: {problem}", file=sys.stderr)
    if found:
        print(f"host commands: {len(found)} problem(s); see hack/check_host_commands.py", file=sys.stderr)
        return 1
    print("host commands: every command the host runs is installed by hack/system-deps.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
