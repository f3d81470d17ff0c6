"""hack/check_twins.py: the lint step that proves the plugin/daemon twin rules equal."""

import importlib.util
import textwrap
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "hack" / "check_twins.py"
spec = importlib.util.spec_from_file_location("check_twins", SCRIPT)
check_twins = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_twins)

PAIR = (("plugin.py", "daemon.py", [("KEY_RE", "KEY_RE", check_twins._pattern), ("LOW", "LOW", frozenset)]),)


def tree(tmp_path, plugin, daemon):
    (tmp_path / "plugin.py").write_text(textwrap.dedent(plugin))
    (tmp_path / "daemon.py").write_text(textwrap.dedent(daemon))
    return tmp_path


def test_equal_twins_pass(tmp_path):
    root = tree(
        tmp_path,
        'import re\nKEY_RE = re.compile(r"\\Aa\\Z")\nLOW = {"x"}\n',
        'import re\nKEY_RE = re.compile(r"\\Aa\\Z")\nLOW = frozenset(("x",))\n',
    )
    assert check_twins.problems(root, PAIR) == []


def test_different_values_are_named(tmp_path):
    root = tree(
        tmp_path,
        'import re\nKEY_RE = re.compile("a")\nLOW = {"x"}\n',
        'import re\nKEY_RE = re.compile("b")\nLOW = {"x"}\n',
    )
    (line,) = check_twins.problems(root, PAIR)
    assert "plugin.py:KEY_RE and daemon.py:KEY_RE differ" in line
    assert "'a'" in line and "'b'" in line


@pytest.mark.parametrize("side", ["plugin", "daemon"])
def test_a_twin_on_one_side_only_fails(tmp_path, side):
    both = 'import re\nKEY_RE = re.compile("a")\n'
    one = both + 'LOW = {"x"}\n'
    root = tree(tmp_path, one, both) if side == "daemon" else tree(tmp_path, both, one)
    (line,) = check_twins.problems(root, PAIR)
    assert "%s.py:LOW is missing" % side in line


def test_a_twin_on_neither_side_is_reported(tmp_path):
    root = tree(tmp_path, 'import re\nKEY_RE = re.compile("a")\n', 'import re\nKEY_RE = re.compile("a")\n')
    (line,) = check_twins.problems(root, PAIR)
    assert "defined on neither side" in line
