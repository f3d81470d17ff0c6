# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's takeover probe (playbooks/lab/files/takeover_probe.py): its outage arithmetic."""

import importlib.util
from pathlib import Path

PROBE = Path(__file__).resolve().parents[3] / "playbooks" / "lab" / "files" / "takeover_probe.py"


def load_probe():
    spec = importlib.util.spec_from_file_location("takeover_probe", PROBE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_longest_gap_is_the_silence_between_replies():
    gap = load_probe().longest_gap([10.0, 10.05, 10.1, 10.52, 10.57], started=9.98, ended=10.6)
    assert gap == {"seconds": 0.42, "from": 10.1, "to": 10.52, "replies": 5, "silences": [[10.1, 0.42]]}


def test_no_reply_after_the_crash_is_a_gap_to_the_end():
    """A tunnel that never came back: the gap runs to the probe's end, which takeover.yml fails on."""
    gap = load_probe().longest_gap([10.0, 10.05], started=10.0, ended=40.0)
    assert gap["from"] == 10.05 and gap["to"] == 40.0


def test_the_wait_for_the_first_reply_is_no_outage():
    gap = load_probe().longest_gap([11.0, 11.05, 11.3], started=10.0, ended=11.32)
    assert gap["seconds"] == 0.25 and gap["from"] == 11.05


def test_no_reply_at_all():
    gap = load_probe().longest_gap([], started=1.0, ended=2.5)
    assert gap == {"seconds": 1.5, "from": 1.0, "to": 2.5, "replies": 0, "silences": [[1.0, 1.5]]}


def test_every_silence_is_listed_in_order():
    gap = load_probe().longest_gap([1.0, 1.3, 1.35, 1.4, 2.0, 2.05], started=1.0, ended=2.1)
    assert gap["silences"] == [[1.0, 0.3], [1.4, 0.6]]
