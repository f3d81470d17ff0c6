"""wgmesh-ha: what keepalived's notify scripts run on a member of an HA gateway pair.

  wgmesh-ha promote --config FILE --vip ADDR [--vip ADDR6]   notify MASTER
  wgmesh-ha demote  --config FILE --vip ADDR [--vip ADDR6]   notify BACKUP / FAULT / STOP: the
                                    source route goes, every peer's endpoint and keepalive too
  wgmesh-ha fifo --config FILE --vip ADDR --instance NAME FIFO
                                    keepalived's notify_fifo_script: both of the above from
                                    one running process, without Python's start-up per change
  wgmesh-ha route install|remove --vip ADDR [--vip ADDR6]     the source route alone

It reads the worker's config file (domains, interface names, backend) and talks to WireGuard
through the worker's backends, so kernel WireGuard and wireguard-go behave the same.
Exit status: 0 done; 1 done with problems (a domain failed, the endpoints file was unusable,
the source route could not be removed: the rest was still done); 2 nothing done (bad arguments
or config, no source route).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass

from wgmesh.config import Config, load_or_exit, setup_logging
from wgmesh.ha import endpoints, fifo, state
from wgmesh.ha.demote import drop_endpoints
from wgmesh.ha.promote import promote
from wgmesh.ha.route import DEFAULT_FWMARK, DEFAULT_PRIORITY, DEFAULT_TABLE, SourceRoute, parse_vips
from wgmesh.worker.domains import DomainLinks, domain_links
from wgmesh.worker.errors import KernelError
from wgmesh.worker.selector import BackendSelector

log = logging.getLogger("wgmesh.ha")


def _int(text: str) -> int:
    return int(text, 0)  # 0x5180 or 20864


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wgmesh-ha", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    route = argparse.ArgumentParser(add_help=False)
    route.add_argument("--vip", action="append", required=True, help="the pair's virtual address (once per family)")
    route.add_argument("--table", type=_int, default=DEFAULT_TABLE, help=f"routing table (default {DEFAULT_TABLE})")
    route.add_argument("--fwmark", type=_int, default=DEFAULT_FWMARK, help=f"mark (default {DEFAULT_FWMARK:#x})")
    route.add_argument(
        "--priority", type=_int, default=DEFAULT_PRIORITY, help=f"rule priority (default {DEFAULT_PRIORITY})"
    )
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", help="the worker's YAML config (default: $WGKEX_CONFIG_FILE, else /etc/wgkex.yaml)")
    config.add_argument(
        "--state-file",
        default=state.DEFAULT_PATH,
        help=f"'active' / 'standby' for the worker's stale-peer cleanup (default {state.DEFAULT_PATH})",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("promote", parents=[config, route], help="become the active member")
    p.add_argument(
        "--endpoints", default=endpoints.DEFAULT_PATH, help=f"learnt endpoints (default {endpoints.DEFAULT_PATH})"
    )
    sub.add_parser("demote", parents=[config, route], help="stop being the active member")
    f = sub.add_parser("fifo", parents=[config, route], help="follow keepalived's notify FIFO")
    f.add_argument(
        "--endpoints", default=endpoints.DEFAULT_PATH, help=f"learnt endpoints (default {endpoints.DEFAULT_PATH})"
    )
    f.add_argument("--instance", required=True, help="the vrrp_instance or vrrp_sync_group whose state counts")
    f.add_argument("fifo", help="the FIFO (keepalived passes it last)")
    r = sub.add_parser("route", parents=[route], help="install or remove the source route alone")
    r.add_argument("action", choices=("install", "remove"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        route = SourceRoute(parse_vips(args.vip), table=args.table, fwmark=args.fwmark, priority=args.priority)
    except ValueError as exc:
        print(f"wgmesh-ha: {exc}", file=sys.stderr)
        return 2
    if args.command == "route":
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        return _route(route, args.action)
    cfg = load_or_exit(args.config)
    setup_logging(cfg, logging.INFO)
    try:
        domains = domain_links(cfg)
    except ValueError as exc:
        print(f"config {cfg.path}: {exc}", file=sys.stderr)
        if args.command == "demote":  # still stop using an address this host no longer holds
            return max(1, Member(cfg, [], BackendSelector(cfg.worker.backend), route, "", args.state_file).demote())
        return 2
    learnt_path = getattr(args, "endpoints", endpoints.DEFAULT_PATH)  # demote reads none
    member = Member(cfg, domains, BackendSelector(cfg.worker.backend), route, learnt_path, args.state_file)
    if args.command == "promote":
        return member.promote()
    if args.command == "demote":
        return member.demote()
    fifo.serve(args.fifo, args.instance, fifo_handler(member))
    return 0


@dataclass(frozen=True)
class Member:
    """What promotion needs on this member: its domains, their backends, the source route."""

    cfg: Config
    domains: list[DomainLinks]
    selector: BackendSelector
    route: SourceRoute
    endpoints_path: str
    state_file: str

    def promote(self) -> int:
        status = 0
        try:
            learnt = endpoints.load(self.endpoints_path, self.cfg.domains)
        except endpoints.EndpointsError as exc:
            # promote anyway: peers with an endpoint of their own still get their handshake
            log.error("learnt endpoints not used: %s", exc)
            learnt, status = {}, 1
        route_error, outcomes = promote(self.domains, self.selector, learnt, self.route, self.cfg.worker.static_peers)
        if route_error:
            log.error("not promoted: source route: %s", route_error)
            return 2
        status = max(status, _set_state(self.state_file, state.ACTIVE))
        return 1 if any(o.error for o in outcomes) else status

    def demote(self) -> int:
        """The source route first (no packet from an address this host no longer holds), then
        every peer's endpoint and keepalive (a standby never sends), then the state file."""
        problems = [_route(self.route, "remove") != 0]
        problems += [o.error is not None for o in drop_endpoints(self.domains, self.selector)]
        problems.append(_set_state(self.state_file, state.STANDBY) != 0)
        return 1 if any(problems) else 0

    def warm_up(self) -> None:
        """Read every interface once, so the first promotion pays for no import and no backend choice."""
        for dom in self.domains:
            try:
                self.selector.for_interface(dom.wg).device(dom.wg)
            except KernelError as exc:
                log.warning("domain %s: %s (tried again on promotion)", dom.domain, exc)
                self.selector.forget(dom.wg)


def _set_state(path: str, value: str) -> int:
    try:
        state.write(path, value)
    except OSError as exc:
        log.error("cannot write the HA state file %s: %s", path, exc)
        return 1
    return 0


def fifo_handler(member: Member) -> Callable[[str], None]:
    """What `wgmesh-ha fifo` does per state keepalived reports."""
    member.warm_up()

    def handle(keepalived_state: str) -> None:
        log.info("keepalived: %s", keepalived_state)
        if keepalived_state == fifo.ACTIVE:
            member.promote()
        else:
            member.demote()

    return handle


def _route(route: SourceRoute, action: str) -> int:
    try:
        if action == "install":
            for line in route.install():
                log.info("source route: %s", line)
        else:
            route.remove()
            log.info("source route removed (table %d, fwmark %#x)", route.table, route.fwmark)
    except KernelError as exc:
        log.error("source route: %s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
