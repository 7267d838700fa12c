"""Learning from clicks live: the model's last layer refitted on clicked points (lc_utils.live_head),
the annotator that redraws after each click, and the filter-and-forest baseline."""

from __future__ import annotations

import base64
import copy
import io
import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lc_utils.active_picks import suggest_points
from lc_utils.annotate import PointAnnotator
from lc_utils.classes import DEEPGLOBE, IGNORE_INDEX, ClassSchema
from lc_utils.filter_forest import FilterForest
from lc_utils.inference import predict_tiled
from lc_utils.live_head import LiveHead, head_path
from lc_utils.models import build_deeplabv3
from lc_utils.point_editor import PointEditor
from lc_utils.saved_files import OtherSettingsError
from lc_utils.settings import PROJECT_ROOT
from lc_utils.sparse import PointAnnotation
from lc_utils.synthetic import generate_pair

TILE = 64
"""Windows smaller than the images, so that prediction blends several of them."""


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_deeplabv3(7, "mobilenet_v3_large", None).eval()


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return _model()


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return generate_pair(0, 0, 96)[0][:, :88].copy()  # 96 x 88: windows overlap on both axes


def _other_class(prediction: np.ndarray, row: int, col: int) -> int:
    """A known class the prediction does not show at (row, col)."""
    return next(k for k in DEEPGLOBE.known_indices() if k != prediction[row, col])


@pytest.mark.slow
def test_with_no_click_the_head_predicts_exactly_as_the_model(model: torch.nn.Module,
                                                              image: np.ndarray) -> None:
    head = LiveHead(model, {"tile": image}, tile_size=TILE)
    expected, expected_probs = predict_tiled(model, image, tile_size=TILE, return_probs=True)
    classes, probs = head.predict("tile", return_probs=True)
    assert len(head.features("tile").layout.corners) == 4
    assert np.array_equal(classes, expected) and np.array_equal(probs, expected_probs)
    # points of the unknown class (and unlabelled ones) teach nothing: still the model's head
    learned = head.learn({"tile": PointAnnotation([5, 6], [5, 6], [DEEPGLOBE.unknown_index, IGNORE_INDEX])})
    assert learned.points == 0 and np.array_equal(head.predict("tile"), expected)
    whole = LiveHead(model, {"tile": image})  # one window: the plain forward pass
    assert np.array_equal(whole.predict("tile"), predict_tiled(model, image))


@pytest.mark.slow
def test_one_click_shows_its_class_and_undo_restores_the_head_exactly(model: torch.nn.Module,
                                                                       image: np.ndarray) -> None:
    head = LiveHead(model, {"tile": image}, tile_size=TILE)
    before = head.predict("tile")
    row, col = 40, 45  # inside the seams of all four windows
    label = _other_class(before, row, col)
    learned = head.learn({"tile": PointAnnotation([row], [col], [label])})
    after = head.predict("tile")
    assert learned.points == 1 and learned.unfitted == 0
    assert after[row, col] == label != before[row, col]
    first = head.state
    second = head.learn({"tile": PointAnnotation([row, 10], [col, 80], [label, (label + 1) % 6])})
    assert second.points == 2 and head.can_undo
    assert head.undo()
    assert head.state is first and torch.equal(head.state.weight, first.weight)
    assert np.array_equal(head.predict("tile"), after)
    assert head.undo() and torch.equal(head.state.weight, model.net.classifier[-1].weight.reshape(7, -1))
    assert np.array_equal(head.predict("tile"), before) and not head.undo()


@pytest.mark.slow
def test_a_head_written_into_the_model_predicts_as_the_live_path(model: torch.nn.Module,
                                                                 image: np.ndarray) -> None:
    head = LiveHead(model, {"tile": image}, tile_size=TILE)
    base = head.predict("tile")
    head.learn({"tile": PointAnnotation([20], [30], [_other_class(base, 20, 30)])})
    tuned = head.write_into(copy.deepcopy(model))
    assert np.array_equal(predict_tiled(tuned, image, tile_size=TILE), head.predict("tile"))
    assert not np.array_equal(predict_tiled(model, image, tile_size=TILE), head.predict("tile"))
    with pytest.raises(OtherSettingsError, match="features_digest"):
        head.write_into(_model(seed=1))  # another model's features: the head does not fit them


@pytest.mark.slow
def test_a_saved_head_loads_back_and_refuses_another_model(model: torch.nn.Module, image: np.ndarray,
                                                           tmp_path: Path) -> None:
    head = LiveHead(model, {"tile": image}, tile_size=TILE)
    points = {"tile": PointAnnotation([20], [30], [_other_class(head.predict("tile"), 20, 30)])}
    head.learn(points)
    path = head.save(head_path(tmp_path / "clicks.csv"))
    assert path == tmp_path / "clicks.head.pt"
    loaded = LiveHead(model, tile_size=TILE)  # no image given: the points' features come with the file
    loaded.load(path)
    assert torch.equal(loaded.state.weight, head.state.weight) and loaded.state.key == head.state.key
    assert torch.equal(loaded.state.bias, head.state.bias) and not loaded.can_undo
    relearned = loaded.learn(points)
    assert relearned.points == 1 and torch.allclose(loaded.state.weight, head.state.weight, atol=1e-6)
    assert np.array_equal(loaded.predict("tile", image), head.predict("tile"))
    with pytest.raises(OtherSettingsError, match=r"head\.pt was made for another model.*features_digest"):
        LiveHead(_model(seed=1), tile_size=TILE).load(path)
    with pytest.raises(OtherSettingsError, match="tile_size"):
        LiveHead(model, tile_size=512).load(path)
    six = ClassSchema(DEEPGLOBE.names[:6], DEEPGLOBE.colors[:6])
    torch.manual_seed(0)
    six_model = build_deeplabv3(6, "mobilenet_v3_large", None).eval()
    with pytest.raises(OtherSettingsError, match=r"clicks\.head\.pt.*num_classes: 7 there, 6 now"):
        LiveHead(six_model, schema=six, tile_size=TILE).load(path)
    (tmp_path / "other.pt").write_bytes(b"not a head")
    with pytest.raises(ValueError, match=r"other\.pt: not a live head file"):
        head.load(tmp_path / "other.pt")
    torch.save({"weights": 1}, tmp_path / "dict.pt")
    with pytest.raises(ValueError, match=r"dict\.pt: not a live head file"):
        head.load(tmp_path / "dict.pt")
    with pytest.raises(ValueError, match="6 classes"):
        LiveHead(six_model)  # the schema's 7 classes, a model of 6
    with pytest.raises(TypeError, match="needs a DeepLabV3"):
        LiveHead(torch.nn.Conv2d(3, 7, 1))
    with pytest.raises(KeyError, match="no image for 'elsewhere'"):
        head.predict("elsewhere")


def _decode(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


@pytest.mark.slow
def test_the_annotator_in_live_mode_redraws_after_a_click_and_undo(model: torch.nn.Module, image: np.ndarray,
                                                                   tmp_path: Path) -> None:
    editor = PointEditor(tmp_path / "clicks.csv", {"tile": image.shape[:2]})
    head = LiveHead(model, tile_size=TILE)
    widget = PointAnnotator(editor, {"tile": image}, live=head, suggest=partial(suggest_points, k=3))
    base = predict_tiled(model, image, tile_size=TILE)
    assert widget.live_mode and widget.overlay == "prediction"
    assert np.array_equal(widget.predictions["tile"], base)
    assert widget.overlays == ["prediction", "uncertainty"] and len(widget.suggestions) == 3
    row, col = 40, 45
    label = _other_class(base, row, col)
    x, y = (col + 0.5) / widget.scale, (row + 0.5) / widget.scale
    widget.active_class = label
    assert widget.click_display(x, y) == "added"
    assert "learned from 1 point in" in widget.status and " ms" in widget.status
    assert widget.predictions["tile"][row, col] == label
    palette = editor.schema.palette
    assert _decode(widget.overlay_url)[int(y), int(x)].tolist() == palette[label].tolist()
    assert head_path(editor.path).is_file()
    learned = head.state
    assert widget.undo() and "the head is back to 0 points" in widget.status
    assert np.array_equal(widget.predictions["tile"], base)
    assert _decode(widget.overlay_url)[int(y), int(x)].tolist() == palette[base[row, col]].tolist()
    # a second annotator on the file takes the saved head up again; without automatic learning a
    # click waits for learn() (the l key)
    widget.click_display(x, y)
    again = PointAnnotator(PointEditor(editor.path, {"tile": image.shape[:2]}), {"tile": image},
                           live=LiveHead(model, tile_size=TILE), auto_learn=False)
    assert torch.equal(again.live.state.weight, learned.weight)
    assert again.predictions["tile"][row, col] == label
    again.active_class = (label + 1) % 6
    again.click_display(x + 40, y + 40)
    assert again.live.state.points == 1 and "learned" not in again.status
    assert again.learn().startswith("learned from 2 points")
    assert again.live.state.points == 2
    with pytest.raises(ValueError, match="give both the same schema"):
        PointAnnotator(editor, {"tile": image}, live=LiveHead(build_deeplabv3(6, "mobilenet_v3_large", None),
                                                              schema=ClassSchema(DEEPGLOBE.names[:6],
                                                                                 DEEPGLOBE.colors[:6])))


def test_the_filter_forest_learns_the_clicked_classes() -> None:
    image, truth = generate_pair(0, 1, 64)
    forest = FilterForest({"tile": image}, n_estimators=10, n_jobs=1)
    with pytest.raises(ValueError, match="no points to learn from"):
        forest.learn({"tile": PointAnnotation([1], [1], [DEEPGLOBE.unknown_index])})
    with pytest.raises(ValueError, match="call learn first"):
        forest.predict("tile")
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, 64, 40), rng.integers(0, 64, 40)
    learned = forest.learn({"tile": PointAnnotation(rows, cols, truth[rows, cols])})
    assert learned.points == 40
    classes, probs = forest.predict("tile", return_probs=True)
    assert classes.shape == (64, 64) and probs.shape == (7, 64, 64)
    assert np.allclose(probs.sum(0), 1, atol=1e-5)
    assert (classes[rows, cols] == truth[rows, cols]).mean() > 0.9  # a forest fits its own points
    assert (classes == truth).mean() > (truth == np.bincount(truth.ravel()).argmax()).mean()



def test_the_readme_quotes_the_speed_record() -> None:
    """The README's seconds per click are the committed record's medians."""
    record = json.loads((PROJECT_ROOT / "benchmarks" / "results" / "live_head_speed.json").read_text())
    tile, original = (next(r for r in record["results"] if r["size"] == size) for size in (512, 2448))
    readme = " ".join((PROJECT_ROOT / "README.md").read_text().split())

    def update(result: dict, learner: str) -> float:
        return result[learner]["median_update_s"]

    assert (f"{update(tile, 'mobilenet_v3_large'):.2f} s (MobileNetV3) and {update(tile, 'resnet50'):.2f} s "
            f"(ResNet-50) on a 512 x 512 tile, {update(original, 'mobilenet_v3_large'):.2f} s and "
            f"{update(original, 'resnet50'):.2f} s on an original") in readme
    assert (f"{update(tile, 'filter_forest'):.2f} s and {update(original, 'filter_forest'):.2f} s per "
            "click") in readme
    assert record["meets_target_on_512"]
