"""Fail when a role's meta/argument_specs.yml and defaults/main.yml differ.

For every roles/<role>/ (or the role directories given): the `main` entry
point must list exactly the variables of defaults/main.yml, each with a
`type`, a `description` and a `default` equal to the value in defaults, so
`ansible-doc -t role` and the generated README say what the role really does.
A role with neither file is skipped. Exit 1 with one line per problem.

Usage: hack/check-argument-specs [ROLE_DIR ...]   (default: roles/*)
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def load(path: Path) -> dict:
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def problems(role: Path) -> list[str]:
    """Every difference between the role's defaults and its argument_specs, one line each."""
    defaults_path = role / "defaults" / "main.yml"
    specs_path = role / "meta" / "argument_specs.yml"
    defaults = load(defaults_path)
    options = (load(specs_path).get("argument_specs") or {}).get("main", {}).get("options") or {}
    if not defaults and not options:
        return []
    found = []
    for name in sorted(set(defaults) - set(options)):
        found.append(f"{role.name}: {name} is in defaults/main.yml but not in meta/argument_specs.yml")
    for name in sorted(set(options) - set(defaults)):
        found.append(f"{role.name}: {name} is in meta/argument_specs.yml but not in defaults/main.yml")
    for name in sorted(set(options) & set(defaults)):
        spec = options[name] or {}
        for field in ("type", "description"):
            if not spec.get(field):
                found.append(f"{role.name}: {name} has no {field} in meta/argument_specs.yml")
        if "default" not in spec:
            found.append(f"{role.name}: {name} has no default in meta/argument_specs.yml")
        elif spec["default"] != defaults[name]:
            found.append(
                f"{role.name}: {name} defaults to {defaults[name]!r} in defaults/main.yml"
                f" but to {spec['default']!r} in meta/argument_specs.yml"
            )
    return found


def main(argv: list[str]) -> int:
    roles = [Path(arg) for arg in argv] or sorted(p for p in (ROOT / "roles").glob("*") if p.is_dir())
    found = [line for role in roles for line in problems(role)]
    for line in found:
        print(line, file=sys.stderr)
    print(f"check-argument-specs: {len(roles)} roles, {len(found)} problems")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
