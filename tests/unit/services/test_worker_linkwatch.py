"""Which rtnetlink link messages make the worker reconcile a domain (linkwatch.LinkStates).

The watch itself runs against real links in tests/integration/services/test_worker_links_recreated.py.
"""

from __future__ import annotations

from wgmesh.worker.linkwatch import LinkStates


def test_a_link_that_appears_is_reported_once_and_its_routine_updates_are_not():
    states = LinkStates()
    assert states.new_link("vx-welt", 7, up=False) == "appeared"
    assert states.new_link("vx-welt", 7, up=False) is None  # MTU, carrier, address changes
    assert states.new_link("vx-welt", 7, up=True) == "came up"
    assert states.new_link("vx-welt", 7, up=True) is None


def test_a_new_ifindex_is_a_recreated_link_even_without_its_deletion_seen():
    states = LinkStates()
    states.new_link("wg-welt", 5, up=True)
    assert states.new_link("wg-welt", 9, up=True) == "recreated (ifindex 5 -> 9)"


def test_a_deleted_link_that_comes_back_appears_again():
    states = LinkStates()
    states.new_link("wg-welt", 5, up=True)
    states.del_link("wg-welt", 5)
    assert states.new_link("wg-welt", 5, up=True) == "appeared"


def test_the_deletion_of_an_older_link_of_the_same_name_is_ignored():
    states = LinkStates()
    states.new_link("wg-welt", 5, up=True)
    states.new_link("wg-welt", 9, up=True)
    states.del_link("wg-welt", 5)  # arrives late: the live link is 9
    assert states.new_link("wg-welt", 9, up=True) is None


def test_a_link_that_went_down_and_up_again_is_reported_for_its_lost_routes():
    states = LinkStates()
    states.new_link("wg-welt", 5, up=True)
    assert states.new_link("wg-welt", 5, up=False) is None
    assert states.new_link("wg-welt", 5, up=True) == "came up"
