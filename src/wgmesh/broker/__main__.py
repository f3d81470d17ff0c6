"""wgmesh-broker --config FILE (else $WGKEX_CONFIG_FILE, else /etc/wgkex.yaml)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys

from wgmesh import __version__
from wgmesh.broker.server import serve
from wgmesh.config import config_path, load_or_exit, setup_logging

# Every request allocates a few hundred objects that reference counting frees anyway; with
# the default 700 the cyclic collector ran every few requests. Measured at v2/64 connections
# in four A/B runs, three gains (up to 0.96 -> 0.73 ms CPU per request): docs/broker.md "Throughput".
GC_THRESHOLDS = (50_000, 20, 100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wgmesh-broker", description=__doc__)
    parser.add_argument("--config", "-c", help=f"config file (default: {config_path()})")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--check", action="store_true", help="validate the config file and exit")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    args = parser.parse_args(argv)
    cfg = load_or_exit(args.config)
    if args.check:
        print(f"config {cfg.path}: OK")
        for warning in cfg.warnings:
            print(warning, file=sys.stderr)
        return 0
    setup_logging(cfg, getattr(logging, args.log_level))
    gc.set_threshold(*GC_THRESHOLDS)
    asyncio.run(serve(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
