"""Is data loading ever the bottleneck? Sparse-dataset samples per second with 2 workers against
the model's training rate at the same crop size (ResNet-50, CPU, channels_last)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from benchmarks._common import report
from benchmarks.bench_training_step import images_per_second
from lc_utils.layouts import find_pairs
from lc_utils.point_files import ensure_annotations
from lc_utils.settings import PROJECT_ROOT
from lc_utils.sparse import SparseLandCoverDataset
from lc_utils.synthetic import make_sample_dataset
from lc_utils.transforms import make_transforms

CROP = 256
REAL_TILES = PROJECT_ROOT.parent / "shared" / "data" / "deepglobe_sample" / "tiles_512"


def samples_per_second(dataset: SparseLandCoverDataset, workers: int, batches: int = 12) -> float:
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, shuffle=True, num_workers=workers,
                                         persistent_workers=workers > 0)
    iterator = iter(loader)
    next(iterator)  # start-up of the workers is not the steady state
    start = time.perf_counter()
    count = 0
    for _ in range(batches):
        try:
            images, _ = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            images, _ = next(iterator)
        count += len(images)
    return count / (time.perf_counter() - start)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if REAL_TILES.is_dir():
            pairs, source = find_pairs(REAL_TILES), "real DeepGlobe 512x512 tiles"
        else:
            pairs = find_pairs(make_sample_dataset(Path(tmp) / "sample", n_images=24, size=512))
            source = "generated 512x512 sample"
        annotations = ensure_annotations(Path(tmp) / "points.csv", pairs, n_points=262, seed=0)
        dataset = SparseLandCoverDataset(pairs, annotations, transform=make_transforms(CROP))
        loading = {w: samples_per_second(dataset, w) for w in (0, 2)}
    model_rate = images_per_second("resnet50", torch.device("cpu"), channels_last=True, amp=False,
                                   batch_size=2, steps=3)
    ratio = loading[2] / model_rate
    report("data_loading", {"source": source, "crop": CROP, "samples_per_s": loading,
                            "resnet50_train_img_s": model_rate, "loader_over_model": ratio},
           f"{source}, {CROP}px crops: loading {loading[2]:.0f} samples/s with 2 workers "
           f"({loading[0]:.0f} in-process) vs training {model_rate:.2f} img/s: loading is {ratio:.0f}x "
           "faster, never the bottleneck on this CPU")


if __name__ == "__main__":
    main()
