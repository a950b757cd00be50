"""Will it fit? The memory this machine can still give, and a clear refusal when a step would
need more, before it starts (instead of the kernel killing the process half-way)."""

from __future__ import annotations

from pathlib import Path

from morphoscope.errors import InputError


def available_bytes() -> int:
    """Memory available to new allocations now (RAM the kernel can give without swapping)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # Linux without psutil
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 1 << 62


def gib(n: int) -> str:
    return f"{n / 2**30:.1f} GB"


def check_fits(nbytes: int, what: str, *, path=None, advice: str = "") -> None:
    """Refuse, with the numbers, a step needing more than 80 % of the available memory."""
    free = available_bytes()
    if nbytes > 0.8 * free:
        raise InputError(f"{what} needs about {gib(nbytes)} of memory but only {gib(free)} is free"
                         + (f"; {advice}" if advice else ""), path=path)
