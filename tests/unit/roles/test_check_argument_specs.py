"""hack/check_argument_specs.py and hack/role_readme.py on small roles of their own, and on roles/."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "hack" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check = load_script("check_argument_specs")
readme = load_script("role_readme")


def make_role(tmp_path: Path, defaults: dict, options: dict) -> Path:
    role = tmp_path / "demo"
    (role / "defaults").mkdir(parents=True)
    (role / "meta").mkdir()
    (role / "defaults" / "main.yml").write_text(yaml.safe_dump(defaults))
    specs = {"argument_specs": {"main": {"short_description": "demo", "options": options}}}
    (role / "meta" / "argument_specs.yml").write_text(yaml.safe_dump(specs))
    return role


def option(default, kind="str"):
    return {"type": kind, "default": default, "description": ["A variable."]}


def test_equal_role_passes(tmp_path):
    role = make_role(tmp_path, {"demo_a": "x", "demo_b": 3}, {"demo_a": option("x"), "demo_b": option(3, "int")})
    assert check.problems(role) == []


@pytest.mark.parametrize(
    ("defaults", "options", "message"),
    [
        ({"demo_a": "x", "demo_new": 1}, {"demo_a": option("x")}, "demo_new is in defaults/main.yml but not in"),
        ({"demo_a": "x"}, {"demo_a": option("x"), "demo_old": option(1)}, "demo_old is in meta/argument_specs.yml but"),
        ({"demo_a": "x"}, {"demo_a": option("y")}, "demo_a defaults to 'x' in defaults/main.yml but to 'y'"),
        ({"demo_a": "x"}, {"demo_a": {"default": "x", "description": "d"}}, "demo_a has no type"),
        ({"demo_a": "x"}, {"demo_a": {"default": "x", "type": "str"}}, "demo_a has no description"),
        ({"demo_a": "x"}, {"demo_a": {"type": "str", "description": "d"}}, "demo_a has no default"),
    ],
)
def test_each_difference_is_named(tmp_path, defaults, options, message):
    found = check.problems(make_role(tmp_path, defaults, options))
    assert len(found) == 1
    assert found[0].startswith("demo: ")
    assert message in found[0]


def test_main_exits_1_on_a_difference(tmp_path, capsys):
    role = make_role(tmp_path, {"demo_a": "x"}, {})
    assert check.main([str(role)]) == 1
    assert "demo_a is in defaults/main.yml" in capsys.readouterr().err


def test_every_role_of_the_collection_passes():
    assert check.main([]) == 0


def test_readme_section_is_generated_and_checked(tmp_path):
    role = make_role(
        tmp_path, {"demo_a": "x"}, {"demo_a": {**option("x"), "description": ["Uses C(code) and O(demo_a)."]}}
    )
    (role / "README.md").write_text(f"# demo\n\nIntro.\n\n{readme.BEGIN}\nstale\n{readme.END}\n\nTail.\n")
    assert readme.main(["--check", str(role)]) == 1
    assert readme.main([str(role)]) == 0
    text = (role / "README.md").read_text()
    assert "| `demo_a` | str | `x` | Uses `code` and `demo_a`. |" in text
    assert text.startswith("# demo\n\nIntro.\n") and text.endswith("\n\nTail.\n")
    assert readme.main(["--check", str(role)]) == 0


def test_every_role_readme_is_up_to_date():
    assert readme.main(["--check"]) == 0
