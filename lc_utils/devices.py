"""Where and how tensors compute: the device, mixed precision and memory formats."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def default_device() -> torch.device:
    """CUDA when available, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a ``torch.device``; ``None`` or ``"auto"`` picks :func:`default_device`."""
    if device is None or device == "auto":
        return default_device()
    return torch.device(device)


def autocast(device: torch.device, enabled: bool = True):
    """Mixed precision on CUDA (bfloat16 where the GPU has it, else float16); a no-op elsewhere."""
    if enabled and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, enabled=False)


def model_device(model: nn.Module) -> torch.device:
    """The device ``model``'s parameters (or buffers) live on; the CPU for a model with neither."""
    tensor = next(model.parameters(), None)
    if tensor is None:
        tensor = next(model.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def device_of(model: nn.Module, device: str | torch.device | None = None) -> torch.device:
    """Where ``model`` runs: the device its weights are on. ``device``, when given, must be that one
    (a model is never moved behind its owner's back: an error says how to move it)."""
    where = model_device(model)
    if device is None or device == "auto":
        return where
    wanted = torch.device(device)
    if wanted.type != where.type or (wanted.index is not None and wanted.index != where.index):
        raise ValueError(f"the model is on {where} but device={str(wanted)!r} was asked for: move it first "
                         f"(model.to({str(wanted)!r})) or leave device out")
    return where


@contextmanager
def memory_format(model: nn.Module, fmt: torch.memory_format) -> Iterator[None]:
    """Run the body with ``model``'s weights in ``fmt``, then put them back as they were."""
    weights = next((p for p in model.parameters() if p.ndim == 4), None)
    before = (torch.channels_last if weights is not None and not weights.is_contiguous()
              and weights.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format)
    model.to(memory_format=fmt)
    try:
        yield
    finally:
        model.to(memory_format=before)


def inference_memory_format(device: torch.device) -> torch.memory_format:
    """The memory format prediction runs in: channels-last on CUDA and on a CPU, the plain
    contiguous one elsewhere (Apple's MPS, not measured). On the 2-core CPU here channels-last runs
    a 512 x 512 window 1.25x (ResNet-50) and 1.8x (MobileNetV3) faster than the contiguous format,
    once model and input are both in it (``benchmarks/bench_inference.py`` measures both)."""
    return torch.channels_last if device.type in ("cuda", "cpu") else torch.contiguous_format


def describe_device() -> str:
    """One line on the device training will use, with how to get a GPU where there is none."""
    device = default_device()
    if device.type == "cuda":
        return f"Using the GPU: {torch.cuda.get_device_name(0)}"
    if device.type == "mps":
        return "Using Apple's GPU (MPS)"
    hint = (" On Colab: Runtime > Change runtime type > GPU, then run the notebook again."
            if _on_colab() else "")
    return f"No GPU found: training runs on the CPU ({torch.get_num_threads()} threads), slowly.{hint}"


def _on_colab() -> bool:
    return "google.colab" in sys.modules
