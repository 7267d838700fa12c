"""Training-step throughput of DeepLabV3 (ResNet-50 and MobileNetV3) at 256x256, timed through the
step `fit` runs (:class:`lc_utils.training.TrainingStep`): default memory format vs channels_last on
the CPU; on CUDA also fp32 vs AMP + channels_last."""

from __future__ import annotations

import time

import torch

from benchmarks._common import report
from lc_utils.classes import IGNORE_INDEX
from lc_utils.losses import PartialCrossEntropyLoss
from lc_utils.models import build_deeplabv3
from lc_utils.training import TrainingStep, make_optimizer

SIZE = 256


def images_per_second(backbone: str, device: torch.device, channels_last: bool, amp: bool,
                      batch_size: int, steps: int) -> float:
    """Images per second through :class:`lc_utils.training.TrainingStep`, the step ``fit`` runs."""
    torch.manual_seed(0)
    model = build_deeplabv3(backbone=backbone)
    step = TrainingStep(model, PartialCrossEntropyLoss(), make_optimizer(model, lr=1e-4), device=device,
                        amp=amp, channels_last=channels_last)
    model.train()
    images = torch.randn(batch_size, 3, SIZE, SIZE, device=device)
    labels = torch.randint(0, 7, (batch_size, SIZE, SIZE), device=device)
    labels[torch.rand(labels.shape, device=device) > 0.01] = IGNORE_INDEX

    step(images, labels)  # warm-up (allocations, kernel selection)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step(images, labels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch_size * steps / (time.perf_counter() - start)


def main() -> None:
    record: dict = {"size": SIZE, "cpu": {}}
    parts = []
    cpu = torch.device("cpu")
    for backbone, steps in (("resnet50", 3), ("mobilenet_v3_large", 5)):
        default = images_per_second(backbone, cpu, channels_last=False, amp=False, batch_size=2, steps=steps)
        fast = images_per_second(backbone, cpu, channels_last=True, amp=False, batch_size=2, steps=steps)
        record["cpu"][backbone] = {"default_img_s": default, "channels_last_img_s": fast,
                                   "speedup": fast / default}
        parts.append(f"{backbone} CPU {default:.2f} -> {fast:.2f} img/s with channels_last "
                     f"({fast / default:.2f}x)")
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        record["cuda"] = {}
        for backbone in ("resnet50", "mobilenet_v3_large"):
            fp32 = images_per_second(backbone, gpu, channels_last=False, amp=False, batch_size=16, steps=20)
            fast = images_per_second(backbone, gpu, channels_last=True, amp=True, batch_size=16, steps=20)
            record["cuda"][backbone] = {"fp32_img_s": fp32, "amp_channels_last_img_s": fast,
                                        "speedup": fast / fp32}
            parts.append(f"{backbone} CUDA {fp32:.0f} -> {fast:.0f} img/s with AMP + channels_last "
                         f"({fast / fp32:.2f}x)")
    report("training_step", record, "; ".join(parts))


if __name__ == "__main__":
    main()
