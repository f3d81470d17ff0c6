"""Run our modules in-process the way AnsiballZ would, and read their JSON result."""

import json

import pytest
from ansible.module_utils.testing import patch_module_args


@pytest.fixture
def run_module(capsys):
    """``run_module(main, args, check=False, diff=False) -> (exit code, result dict)``."""

    def run(main, args, check=False, diff=False):
        args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
        capsys.readouterr()
        with patch_module_args(args), pytest.raises(SystemExit) as exited:
            main()
        return exited.value.code, json.loads(capsys.readouterr().out)

    return run
