"""keepalived's notify_fifo_script in bench/ha_failover.py: `wgmesh-ha fifo`, unchanged, except
that it acts only while the bench runs its own setup ("ours" in MODE_FILE); in the common
setup the notify scripts alone act.

    ha_fifo_gate.py MODE_FILE <wgmesh-ha arguments ...>
"""

from __future__ import annotations

import sys
from pathlib import Path

from wgmesh.ha import __main__ as ha
from wgmesh.ha import fifo


def main() -> int:
    mode_file = Path(sys.argv[1])
    serve = fifo.serve

    def gated_serve(path, name, handle):
        def maybe(state: str) -> None:
            if mode_file.read_text().strip() == "ours":
                handle(state)

        serve(path, name, maybe)

    fifo.serve = gated_serve
    return ha.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
