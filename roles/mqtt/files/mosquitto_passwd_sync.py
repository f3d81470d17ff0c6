"""Make a mosquitto password file hold exactly the given users, idempotently.

mosquitto_passwd salts every hash afresh, so re-running it changes the file
(and restarts mosquitto) on every Ansible run. This tool keeps each entry
whose hash still verifies its password and hashes only new or changed ones,
in mosquitto 2.0's format ($7$: PBKDF2-HMAC-SHA512, 101 rounds, 12-byte salt).

Input on stdin, JSON: [{"name": ..., "password": ...}, ...].
Output on stdout, JSON: {"changed": bool, "added": [...], "updated": [...],
"removed": [...], "attributes": bool} -- names only, never a password.
Usage: python3 mosquitto_passwd_sync.py PATH [--group mosquitto] [--check]
"""

from __future__ import annotations

import argparse
import base64
import grp
import hashlib
import hmac
import json
import os
import secrets
import sys
import tempfile

ROUNDS = 101
SALT_BYTES = 12
MODE = 0o640


def hash_password(password, salt=None):
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, ROUNDS)
    return "$7${}${}${}".format(ROUNDS, base64.b64encode(salt).decode(), base64.b64encode(digest).decode())


def verifies(entry, password):
    """True when a $6$ or $7$ hash from mosquitto_passwd matches password."""
    parts = entry.split("$")
    try:
        if len(parts) == 5 and parts[1] == "7":
            salt, want = base64.b64decode(parts[3]), base64.b64decode(parts[4])
            got = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2]))
        elif len(parts) == 4 and parts[1] == "6":
            salt, want = base64.b64decode(parts[2]), base64.b64decode(parts[3])
            got = hashlib.sha512(password.encode() + salt).digest()
        else:
            return False
    except ValueError:
        return False
    return hmac.compare_digest(got, want)


def read_entries(path):
    entries = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                name, sep, entry = line.rstrip("\n").partition(":")
                if sep:
                    entries[name] = entry
    except FileNotFoundError:
        pass
    return entries


def plan(current, accounts):
    """The new entries and what changed, keeping every hash that still verifies."""
    wanted, report = {}, {"added": [], "updated": [], "removed": sorted(set(current) - {a["name"] for a in accounts})}
    for account in accounts:
        name, password = account["name"], account["password"]
        if name in current and verifies(current[name], password):
            wanted[name] = current[name]
            continue
        report["updated" if name in current else "added"].append(name)
        wanted[name] = hash_password(password)
    return wanted, report


def attributes_differ(path, gid):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return True
    return st.st_uid != 0 or st.st_gid != gid or (st.st_mode & 0o7777) != MODE


def write(path, entries, gid):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".wgmesh-passwd.")
    try:
        os.fchown(fd, 0, gid)
        os.fchmod(fd, MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.writelines(f"{name}:{entry}\n" for name, entry in sorted(entries.items()))
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--group", default="mosquitto")
    parser.add_argument("--check", action="store_true", help="report what would change, change nothing")
    args = parser.parse_args(argv)
    accounts = json.load(sys.stdin)
    for index, account in enumerate(accounts):
        name = account.get("name")
        if not isinstance(name, str) or not name or ":" in name or not isinstance(account.get("password"), str):
            sys.exit(f"account #{index}: needs a non-empty name without ':' and a string password")
    gid = grp.getgrnam(args.group).gr_gid
    entries, report = plan(read_entries(args.path), accounts)
    contents_change = bool(report["added"] or report["updated"] or report["removed"])
    report["attributes"] = attributes_differ(args.path, gid)
    report["changed"] = contents_change or report["attributes"]
    if report["changed"] and not args.check:
        write(args.path, entries, gid)
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
