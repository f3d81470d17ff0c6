"""The test tree's layout: one pytest call for every tier, bench scripts that need no test directory."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
BENCH_SCRIPTS = sorted(p.name for p in (REPO_ROOT / "bench").glob("*_bench.py"))


def test_unit_and_integration_collect_in_one_call_in_any_order():
    # Integration files first: their helpers must not depend on which conftest pytest imported
    # last (two conftest.py files outside packages both import as the top-level `conftest`).
    services = sorted(str(p) for p in (REPO_ROOT / "tests/integration/services").glob("test_*.py"))
    argv = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    proc = subprocess.run(
        argv + services + ["tests/unit/services"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


# What a bench script loaded, as seen from inside it: runpy runs it as __main__ with --help.
PROBE = """
import runpy, sys
sys.argv = [sys.argv[1], "--help"]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit:
    pass
loaded = [
    name for name, mod in list(sys.modules.items())
    if name == "conftest" or "/tests/integration/" in str(getattr(mod, "__file__", ""))
]
print("LOADED", loaded)
"""


@pytest.mark.parametrize("script", BENCH_SCRIPTS)
def test_bench_scripts_load_no_test_conftest_or_test_directory(script):
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(REPO_ROOT / "bench" / script)],
        cwd=REPO_ROOT / "bench",
        capture_output=True,
        text=True,
        check=False,
    )
    assert "LOADED" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stdout.rsplit("LOADED", 1)[1].strip() == "[]"
