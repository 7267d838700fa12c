"""rgb_to_class against the textbook per-class np.all loop on a real-size 2448x2448 mask."""

from __future__ import annotations

import numpy as np

from benchmarks._common import report, time_call
from lc_utils.classes import DEEPGLOBE
from lc_utils.masks import class_to_rgb, rgb_to_class
from lc_utils.synthetic import generate_pair


def naive_rgb_to_class(mask: np.ndarray) -> np.ndarray:
    binary = np.where(mask >= 128, 255, 0)
    out = np.full(mask.shape[:2], DEEPGLOBE.unknown_index, dtype=np.uint8)
    for index, color in enumerate(DEEPGLOBE.colors):
        out[np.all(binary == color, axis=-1)] = index
    return out


def main() -> None:
    _, labels = generate_pair(seed=0, index=0, size=612)
    mask = class_to_rgb(np.kron(labels, np.ones((4, 4), np.uint8)))  # 2448 x 2448
    fast = time_call(lambda: rgb_to_class(mask), repeat=7)
    naive = time_call(lambda: naive_rgb_to_class(mask), repeat=3)
    assert np.array_equal(rgb_to_class(mask), naive_rgb_to_class(mask))
    ratio = naive["median_s"] / fast["median_s"]
    report("mask_decoding", {"shape": list(mask.shape), "rgb_to_class": fast,
                             "naive_loop": naive, "speedup": ratio},
           f"2448x2448 mask: rgb_to_class {fast['median_s'] * 1000:.1f} ms, naive loop "
           f"{naive['median_s'] * 1000:.0f} ms, {ratio:.1f}x faster")


if __name__ == "__main__":
    main()
