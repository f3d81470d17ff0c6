"""The one line every benchmark prints about the machine it ran on."""

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe(*extras: str) -> str:
    """CPUs, model, kernel, Python and load average, then any tool versions given."""
    load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    base = (
        f"{os.cpu_count()} CPUs ({cpu_model()}), Linux {platform.release()}, "
        f"Python {platform.python_version()}, load {load}"
    )
    return ", ".join([base, *extras])
