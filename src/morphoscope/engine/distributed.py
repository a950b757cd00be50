"""torch.distributed set-up for ``torchrun`` (one process per GPU, several nodes welcome).

Under torchrun the environment has RANK, WORLD_SIZE and LOCAL_RANK; without it everything here
degrades to a single process, so the same training code runs either way.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as tdist


def init() -> tuple[int, int, int]:
    """Initialise the process group when launched by torchrun; returns (rank, world, local_rank)."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        if not tdist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            tdist.init_process_group(backend=backend)
        local = int(os.environ.get("LOCAL_RANK", 0))
        if torch.cuda.is_available():
            torch.cuda.set_device(local)
        return tdist.get_rank(), tdist.get_world_size(), local
    return 0, 1, 0


def is_dist() -> bool:
    return tdist.is_available() and tdist.is_initialized()


def rank() -> int:
    return tdist.get_rank() if is_dist() else 0


def world() -> int:
    return tdist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_dist():
        tdist.barrier()


def reduce_dict(d: dict) -> dict:
    """Average a dict of scalar tensors over all processes (for logging identical numbers)."""
    if not is_dist() or not d:
        return d
    keys = sorted(d)
    vals = torch.stack([d[k].float() for k in keys])
    tdist.all_reduce(vals)
    vals /= world()
    return dict(zip(keys, vals))


def gather_lists(items: list) -> list:
    """Concatenate a list from every process (in rank order); a no-op in one process."""
    if not is_dist():
        return items
    parts: list = [None] * world()
    tdist.all_gather_object(parts, items)
    return [x for p in parts for x in p]


def cleanup() -> None:
    if is_dist():
        tdist.destroy_process_group()
