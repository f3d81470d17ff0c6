"""wgmesh-worker --config FILE: the gateway worker (see wgmesh.worker).

SIGHUP: reconcile every domain now, without a restart (the config is not read again).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from wgmesh.config import load_or_exit, setup_logging
from wgmesh.worker import drift
from wgmesh.worker.daemon import Worker
from wgmesh.worker.domains import domain_links

log = logging.getLogger("wgmesh.worker")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wgmesh-worker", description=__doc__)
    parser.add_argument("--config", help="YAML config (default: $WGKEX_CONFIG_FILE, else /etc/wgkex.yaml)")
    parser.add_argument("--debug", action="store_true", help="log the worker's own debug messages")
    parser.add_argument("--check", action="store_true", help="validate the config file and exit")
    parser.add_argument(
        "--drift",
        action="store_true",
        help="read-only: list what a reconcile would change now, one line per finding; "
        f"exit {drift.EXIT_IN_SYNC} in sync, {drift.EXIT_DRIFT} drift, {drift.EXIT_ERROR} error",
    )
    args = parser.parse_args(argv)
    cfg = load_or_exit(args.config)
    setup_logging(cfg, logging.WARNING if args.drift else logging.INFO)
    if args.debug:
        # ours only: pyroute2 logs every netlink message at debug level, which slows the worker down
        logging.getLogger("wgmesh").setLevel(logging.DEBUG)
    try:
        links = domain_links(cfg)
    except ValueError as exc:
        print(f"config {cfg.path}: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"config {cfg.path}: OK")
        for dom in links:
            print(f"  {dom.domain}: {dom.wg}, {dom.vx} (rule {dom.rule})")
        return 0
    if args.drift:
        return drift.report(cfg)
    worker = Worker(cfg)

    def on_signal(signum, frame):
        log.info("signal %d: stopping", signum)
        worker.stop()

    def on_reload(signum, frame):
        worker.reload()  # only queues: the apply thread owns the kernel

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_reload)
    log.info("worker %s for domains %s", worker.name, ", ".join(worker.domains))
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
