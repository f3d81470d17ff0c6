"""A rendered systemd unit's commands, run the way systemd would run them, for hosts without systemd.

Only what the role's units use: `Environment=`, `EnvironmentFile=`, `%i`, `${NAME}`, `$$`, and
the `-` prefix (a failure is ignored). Each command runs inside a network namespace.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path


class UnitCommands:
    def __init__(self, text: str, instance: str):
        self.instance = instance
        self.env: dict[str, str] = {}
        self.lines: dict[str, list[str]] = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if not sep or line.startswith("#"):
                continue
            if key == "Environment":
                name, dummy, setting = value.partition("=")
                self.env[name] = setting
            elif key == "EnvironmentFile":
                self.env.update(read_env_file(Path(self.specifiers(value))))
            else:
                self.lines.setdefault(key, []).append(value)

    def specifiers(self, value: str) -> str:
        return value.replace("%i", self.instance)

    def argv(self, line: str) -> tuple[list[str], bool]:
        """(argv, whether a failure counts) of one Exec line, after systemd's substitutions."""
        counts = not line.startswith("-")
        words = shlex.split(self.specifiers(line.lstrip("-")))
        return [self.expand(word) for word in words], counts

    def expand(self, word: str) -> str:
        """${NAME} anywhere in a word; $$ is a literal $ (systemd.service(5), "Command lines")."""
        return re.sub(r"\$\{(\w+)\}", lambda m: self.env[m.group(1)], word).replace("$$", "$")

    def start(self, line: str, netns: str, log: Path, **extra_env: str) -> tuple[subprocess.Popen, bool]:
        """Start one Exec line in the namespace: (its process, whether its failure counts)."""
        argv, counts = self.argv(line)
        with log.open("a") as out:
            # A file, not a pipe: a command's own background child must not hold the caller up.
            proc = subprocess.Popen(
                ["ip", "netns", "exec", netns, *argv],
                env=dict(os.environ, **self.env, **extra_env),
                stdout=out,
                stderr=out,
            )
        return proc, counts

    def execute(self, kind: str, netns: str, log: Path) -> None:
        """Each `kind` line (ExecStartPost, ...) in order, each after the one before has exited."""
        for line in self.lines.get(kind, []):
            proc, counts = self.start(line, netns, log)
            if proc.wait() != 0 and counts:
                raise RuntimeError(f"{kind}={line} failed (rc={proc.returncode}); see {log}")


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, dummy, value = line.partition("=")
            env[name.strip()] = value.strip()
    return env
