"""Tiny distributed helpers: env defaults so plain ``python`` runs, print0, rank-0 writes, seeds per rank.

``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; a plain ``python`` run gets
a world of one and never initialises a process group.
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as tdist

from lia_live.runtime import resolve_device


def rank() -> int:
    return tdist.get_rank() if tdist.is_available() and tdist.is_initialized() else 0


def world_size() -> int:
    return tdist.get_world_size() if tdist.is_available() and tdist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def print0(*args, **kw) -> None:
    """``print`` on rank 0 only (flushed)."""
    if is_main():
        print(*args, **kw, flush=True)


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def pick_device(name: str) -> torch.device:
    """This rank's device: ``name`` resolved as every tool resolves it (:func:`lia_live.runtime.resolve_device`:
    auto, cpu, cuda, cuda:N), and under torchrun each rank on its own GPU, ``cuda:LOCAL_RANK``."""
    resolved = resolve_device(name)
    if not resolved.startswith("cuda"):
        return torch.device(resolved)
    if "LOCAL_RANK" in os.environ or ":" not in resolved:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device(resolved)


def init(device: torch.device) -> None:
    """Join the process group when launched by torchrun (NCCL on GPU, gloo on CPU)."""
    if env_world_size() <= 1 or tdist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    tdist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def shutdown(clean: bool = True) -> None:
    """Leave the process group. ``clean`` (the run finished on this rank): all ranks first meet at a barrier,
    so no rank tears down while another still communicates. After a failure there is no barrier (the other
    ranks may never reach it)."""
    if tdist.is_available() and tdist.is_initialized():
        if clean and world_size() > 1:
            tdist.barrier()
        tdist.destroy_process_group()


def exit_process(code: int) -> None:
    """End a torchrun worker process now, skipping interpreter finalisation.

    ``destroy_process_group`` does not destroy a gloo process group while anything still references it
    (DDP and c10d keep references: its ``pt_gloo_runloop`` / ``gloo_tcp_loop`` threads are still alive
    afterwards, measured). Those threads then meet Python's finalisation: a worker that drops the last
    reference to a tensor of a finished collective needs the GIL, and a thread that asks for the GIL
    while the interpreter finalises is ended with ``pthread_exit``, whose forced unwind through C++
    ``noexcept`` code is ``terminate called without an active exception`` → SIGABRT, on whichever rank
    exits right after its last collective (rank 1: rank 0 still writes the summary). Everything of the
    run is closed and flushed by then (checkpoints and reports are atomic files, the TensorBoard writer
    and data workers are closed by ``Trainer.close``), so leaving with ``os._exit`` loses nothing.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def barrier() -> None:
    if world_size() > 1:
        tdist.barrier()


def all_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean of a tensor over ranks (a copy; the input is unchanged)."""
    out = values.detach().clone()
    if world_size() > 1:
        tdist.all_reduce(out, op=tdist.ReduceOp.SUM)
        out /= world_size()
    return out


def any_true(flag: bool, device: torch.device) -> bool:
    """True on every rank when it is true on any rank (used to stop all ranks together)."""
    if world_size() <= 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
    return bool(t.item() > 0)


def max_param_diff(module: torch.nn.Module) -> float:
    """Largest |p_rank − p_rank0| over all parameters and ranks (0.0 on one process)."""
    if world_size() <= 1:
        return 0.0
    flat = torch.cat([p.detach().reshape(-1).float() for p in module.parameters()])  # (P,)
    ref = flat.clone()
    tdist.broadcast(ref, src=0)
    diff = (flat - ref).abs().max().reshape(1)  # (1,)
    tdist.all_reduce(diff, op=tdist.ReduceOp.MAX)
    return float(diff.item())


def seed_all(seed: int) -> None:
    """Seed torch (CPU and CUDA) with ``seed + rank`` so ranks draw different noise."""
    torch.manual_seed(seed + rank())


def eprint(*args) -> None:
    print(*args, file=sys.stderr, flush=True)
