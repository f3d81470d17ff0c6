"""The learnt-endpoints file: checked whole before use, written atomically."""

from __future__ import annotations

import json

import pytest

from wgmesh.ha import endpoints
from wgmesh.worker.backend import split_endpoint

KEY = "XGubrkGtuECdvoykKeUiNMigk2onfLCPfEo9Im+vmx8="
DOMAINS = ("ffmuc_welt", "ffmuc_uml")


def test_round_trip(tmp_path):
    path = str(tmp_path / "sub" / "ep.json")
    learnt = {"ffmuc_welt": {KEY: "198.51.100.7:4242"}, "ffmuc_uml": {KEY: "[2001:db8::7]:4242"}}
    endpoints.save(path, learnt)
    assert endpoints.load(path, DOMAINS) == learnt


def test_absent_file_means_nothing_learnt_yet(tmp_path):
    assert endpoints.load(str(tmp_path / "none.json"), DOMAINS) == {}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"domains": {"ffmuc_other": {}}}, "domains.ffmuc_other: not a domain of this gateway"),
        ({"domains": {"ffmuc_welt": {"nokey": "198.51.100.7:1"}}}, "'nokey' is not a WireGuard public key"),
        ({"domains": {"ffmuc_welt": {KEY: "198.51.100.7"}}}, f"domains.ffmuc_welt.{KEY}: endpoint"),
        ({"domains": {"ffmuc_welt": {KEY: "2001:db8::7:1"}}}, "an IPv6 address goes in brackets"),
        ({"domains": {"ffmuc_welt": {KEY: 4242}}}, f"domains.ffmuc_welt.{KEY}"),
        ({"domains": {"ffmuc_welt": []}}, "must map public keys to endpoints"),
        ([], "expected"),
    ],
)
def test_a_bad_entry_rejects_the_whole_file_naming_file_and_entry(tmp_path, data, message):
    path = tmp_path / "ep.json"
    path.write_text(json.dumps(data))
    with pytest.raises(endpoints.EndpointsError) as err:
        endpoints.load(str(path), DOMAINS)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_not_json(tmp_path):
    path = tmp_path / "ep.json"
    path.write_text("{")
    with pytest.raises(endpoints.EndpointsError, match="not valid JSON"):
        endpoints.load(str(path), DOMAINS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("198.51.100.7:4242", ("198.51.100.7", 4242)), ("[2001:db8::7]:1", ("2001:db8::7", 1))],
)
def test_split_endpoint(text, expected):
    assert split_endpoint(text) == expected


@pytest.mark.parametrize("text", ["[198.51.100.7]:1", "2001:db8::7:1", "198.51.100.7:0", "198.51.100.7:x", "host:1"])
def test_split_endpoint_refuses(text):
    with pytest.raises(ValueError):
        split_endpoint(text)
