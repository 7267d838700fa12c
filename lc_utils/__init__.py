"""Land cover segmentation from sparse point labels: the package behind the course notebooks."""

from .classes import DEEPGLOBE, IGNORE_INDEX, ClassSchema
from .masks import class_to_rgb, read_mask, rgb_to_class

__all__ = ["DEEPGLOBE", "IGNORE_INDEX", "ClassSchema", "class_to_rgb", "read_mask", "rgb_to_class"]
__version__ = "0.1.0"
