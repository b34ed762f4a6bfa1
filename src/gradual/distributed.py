"""One process or N: rank, world size, the rank's own device, item sharding and gathering.

Run as: imported by every command; launched with
    accelerate launch [--cpu] --num_processes N -m gradual.cli <command> ...
    torchrun --nproc-per-node N -m gradual.cli <command> ...

Both launchers set RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT.
Without WORLD_SIZE (or with 1) every helper here is a no-op that never imports torch.distributed
or creates a process group, so a single-process run is exactly what it was.

The contract the commands follow:
- each rank loads the model on its own device (gradual.lm.load.choose_placement asks `device_index`);
- probe and eval split their items with `shard` (items[rank::world]); every random draw is keyed by
  (seed, item, exemplar set), so a rank computes for its items exactly what one process would, and
  `gather` puts the rows back in the original order on every rank;
- what a step has already written (a run folder, the probe cache) is read by the main process and
  handed to the others with `on_main`, so every rank takes the same branch even where the folder is
  not on storage that all nodes see; only the main process writes files or prints;
- training is the Trainer's DDP; `per_process_batch` keeps the global batch the configured one.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence, TypeVar

from gradual.errors import UserError

T = TypeVar("T")
R = TypeVar("R")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw.strip() else default
    except ValueError:
        raise UserError(f"{name}={raw!r} in the environment is not an integer (set by the launcher)") from None


def world_size() -> int:
    """Processes in the job (1 when not launched by accelerate launch or torchrun)."""
    return max(1, _env_int("WORLD_SIZE", 1))


def rank() -> int:
    return _env_int("RANK", 0) if world_size() > 1 else 0


def local_rank() -> int:
    """This process's index on its node: the GPU it uses."""
    return _env_int("LOCAL_RANK", rank()) if world_size() > 1 else 0


def local_world_size() -> int:
    """Processes on this node (LOCAL_WORLD_SIZE; both launchers set it)."""
    return _env_int("LOCAL_WORLD_SIZE", world_size()) if world_size() > 1 else 1


def is_distributed() -> bool:
    return world_size() > 1


def is_main() -> bool:
    """True in the process that writes files, prints and draws progress bars (rank 0)."""
    return rank() == 0


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def setup(device: Any = None) -> None:
    """Join the process group once: nccl when this rank computes on a GPU, gloo on CPU.

    `device` ("cpu", "cuda", "cuda:1", "auto", a torch.device or None) says where the rank computes;
    "auto"/None guesses as choose_placement does (a GPU when one is visible and `accelerate launch
    --cpu` did not ask for CPU). The Trainer later finds the group initialized and uses it (accelerate's
    PartialState joins an existing group instead of creating one)."""
    if not is_distributed():
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    kind = str(device.type if isinstance(device, torch.device) else (device or "auto"))
    if kind in ("", "auto"):
        kind = "cuda" if torch.cuda.is_available() and not env_flag("ACCELERATE_USE_CPU") else "cpu"
    if kind.startswith("cuda"):
        # nccl moves gathered objects through the current GPU: it must be this rank's own.
        torch.cuda.set_device(local_rank())
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")


def _group_ready() -> Any:
    import torch.distributed as dist

    setup()
    return dist


def barrier() -> None:
    """Wait until every rank gets here (a no-op in one process)."""
    if not is_distributed():
        return
    dist = _group_ready()
    if dist.get_backend() == "nccl":
        import torch

        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def all_gather(value: T) -> list[T]:
    """[value of rank 0, value of rank 1, ...] on every rank ([value] in one process)."""
    if not is_distributed():
        return [value]
    dist = _group_ready()
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def broadcast(value: T) -> T:
    """The main process's `value`, on every rank."""
    if not is_distributed():
        return value
    dist = _group_ready()
    box: list[Any] = [value if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(fn: Callable[[], R]) -> R:
    """Run `fn` on the main process only and return its result on every rank; an exception it raises
    is raised on every rank, so all of them fail the same way instead of waiting for each other."""
    if not is_distributed():
        return fn()
    result: tuple[bool, Any] = (True, None)
    if is_main():
        try:
            result = (True, fn())
        except Exception as exc:  # noqa: BLE001  (handed to every rank, re-raised below)
            result = (False, exc)
    ok, value = broadcast(result)
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def shard(items: Sequence[T]) -> list[T]:
    """This rank's items: items[rank::world] (all of them in one process). `gather` undoes it."""
    return list(items[rank()::world_size()]) if is_distributed() else list(items)


def unshard(parts: Sequence[Sequence[T]]) -> list[T]:
    """Interleave the ranks' shards (parts[r] = items[r::world]) back into the original order."""
    n = sum(len(p) for p in parts)
    out: list[Any] = [None] * n
    for r, part in enumerate(parts):
        out[r::len(parts)] = list(part)
    return out


def gather(part: Sequence[T]) -> list[T]:
    """Every rank's results for its `shard`, in the order of the unsharded list, on every rank.
    Every rank gets them (not only the main process) so all of them take the same next steps."""
    if not is_distributed():
        return list(part)
    return unshard(all_gather(list(part)))


def check_shardable(n_items: int, what: str) -> None:
    """A launch with more processes than items cannot give every rank work: refuse it (exit 2)."""
    if is_distributed() and n_items < world_size():
        raise UserError(f"{what}: {n_items} item(s) cannot be split across {world_size()} processes; "
                        f"launch at most {n_items} (accelerate launch --num_processes / torchrun --nproc-per-node)")


def per_process_batch(batch_size: int, grad_accum: int, flag: str = "train.batch_size") -> tuple[int, int]:
    """(per-device batch, gradient accumulation steps) so that one optimizer step sees the configured
    global batch, batch_size * grad_accum examples, however many processes share it.

    The per-device batch is batch_size / world when that divides; otherwise the largest per-device
    batch whose product with the world size divides the global batch, the rest becoming accumulation
    (batch 4, accumulation 2 on 8 processes: 1 per device, no accumulation). A global batch that the
    world size does not divide cannot be kept: that is refused (exit 2)."""
    world = world_size()
    if world == 1:
        return batch_size, grad_accum
    total = batch_size * grad_accum
    for per_device in range(min(batch_size, total // world), 0, -1):
        if total % (per_device * world) == 0:
            return per_device, total // (per_device * world)
    raise UserError(f"{flag}: a global batch of {total} ({flag} {batch_size} x grad_accum {grad_accum}) cannot be "
                    f"split evenly across {world} processes; choose a multiple of {world}")


def refuse(what: str, why: str) -> None:
    """For a code path that cannot run sharded (e.g. a backend that owns every GPU itself): exit 2."""
    if is_distributed():
        raise UserError(f"{what} cannot run under a {world_size()}-process launch ({why}); "
                        "run it as one process (no accelerate launch / torchrun, or --num_processes 1)")


def shutdown() -> None:
    """Leave the process group at a clean exit: wait for every rank first, so that the launcher's
    return means the main process has written everything."""
    if not is_distributed():
        return
    import torch.distributed as dist

    if dist.is_initialized():
        barrier()
        dist.destroy_process_group()


__all__ = ["all_gather", "barrier", "broadcast", "check_shardable", "env_flag", "gather", "is_distributed",
           "is_main", "local_rank", "local_world_size", "on_main", "per_process_batch", "rank", "refuse", "setup",
           "shard", "shutdown", "unshard", "world_size"]
