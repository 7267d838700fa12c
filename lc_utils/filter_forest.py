"""The baseline a person reaches for to learn from clicks without a network: ilastik's recipe.

Filters at several scales (smoothed intensity and the Hessian's eigenvalues, a texture measure,
of each colour channel: :func:`skimage.feature.multiscale_basic_features`) give every pixel a
feature vector, and a random forest fitted on the clicked pixels classifies every pixel of the
image, as scikit-image's "trainable segmentation" example does. :class:`FilterForest` has
:class:`lc_utils.live_head.LiveHead`'s interface, so that the two are timed (and later scored) on
the same clicks: ``benchmarks/live_head_speed.py``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from skimage.feature import multiscale_basic_features
from sklearn.ensemble import RandomForestClassifier

from .classes import DEEPGLOBE, ClassSchema
from .live_head import Learned, image_of, keep, points_key
from .sparse import PointAnnotation


class FilterForest:
    """Multiscale filters and a random forest refitted on the clicks (the module's docstring).

    The features are scikit-image's example's (intensity and texture at ``sigma_min`` ..
    ``sigma_max``, 45 per pixel for an RGB image at the defaults: float32, 47 MB for a 512² tile,
    1.1 GB for a 2448² original), kept for ``cache_images`` images; the forest has
    ``n_estimators`` trees of at most ``max_depth`` levels, fitted on ``n_jobs`` cores (-1: all)
    with ``seed``. Points of the schema's unknown class are not learned from.
    """

    def __init__(self, images: Mapping[str, str | Path | np.ndarray] | None = None, *,
                 schema: ClassSchema = DEEPGLOBE, sigma_min: float = 1.0, sigma_max: float = 16.0,
                 n_estimators: int = 50, max_depth: int | None = 10, n_jobs: int = -1, seed: int = 0,
                 cache_images: int = 2) -> None:
        self.images = dict(images or {})
        self.schema = schema
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self.n_estimators, self.max_depth, self.n_jobs, self.seed = n_estimators, max_depth, n_jobs, seed
        self.cache_images = cache_images
        self.forest: RandomForestClassifier | None = None
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._samples: dict[tuple[str, int, int], np.ndarray] = {}

    def features(self, image_id: str, image: str | Path | np.ndarray | None = None) -> np.ndarray:
        """The (H, W, F) float32 filter responses of image ``image_id``, computed once and kept."""
        if image_id in self._cache:
            self._cache.move_to_end(image_id)
            return self._cache[image_id]
        array = image_of(self.images, image_id, image, "FilterForest")
        features = multiscale_basic_features(array, intensity=True, edges=False, texture=True,
                                             sigma_min=self.sigma_min, sigma_max=self.sigma_max,
                                             channel_axis=-1).astype(np.float32, copy=False)
        return keep(self._cache, image_id, features, self.cache_images)

    def learn(self, annotations: Mapping[str, PointAnnotation],
              images: Mapping[str, str | Path | np.ndarray] | None = None) -> Learned:
        """A new forest on every point of ``annotations`` (image id -> points)."""
        started = time.perf_counter()
        self.images.update(images or {})
        key = points_key(annotations, self.schema)
        if not key:
            raise ValueError("no points to learn from (points of the unknown class are not learned from)")
        for image_id, row, col, _ in key:
            if (image_id, row, col) not in self._samples:
                self._samples[(image_id, row, col)] = self.features(image_id)[row, col]
        forest = RandomForestClassifier(n_estimators=self.n_estimators, max_depth=self.max_depth,
                                        n_jobs=self.n_jobs, random_state=self.seed)
        forest.fit(np.stack([self._samples[k[:3]] for k in key]), np.array([k[3] for k in key]))
        self.forest = forest
        return Learned(len(key), time.perf_counter() - started, 0.0, 0)

    def predict(self, image_id: str, image: str | Path | np.ndarray | None = None, *,
                return_probs: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """The (H, W) uint8 class map of image ``image_id`` by the last forest; with
        ``return_probs`` also the (C, H, W) float32 class probabilities (0 for classes no point
        has)."""
        if self.forest is None:
            raise ValueError("the forest has learned from no points yet: call learn first")
        features = self.features(image_id, image)
        height, width, count = features.shape
        seen = self.forest.predict_proba(features.reshape(-1, count)).astype(np.float32)
        probs = np.zeros((self.schema.num_classes, height * width), np.float32)
        probs[self.forest.classes_] = seen.T
        class_map = self.forest.classes_[seen.argmax(1)].astype(np.uint8).reshape(height, width)
        return (class_map, probs.reshape(-1, height, width)) if return_probs else class_map
