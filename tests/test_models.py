import warnings
from pathlib import Path

import pytest
import torch

from lc_utils.models import PretrainedWeightsWarning, batchnorm_layers, build_deeplabv3


@pytest.fixture(scope="module")
def mobilenet() -> torch.nn.Module:
    return build_deeplabv3(backbone="mobilenet_v3_large").eval()


@pytest.mark.parametrize("shape", [(1, 3, 33, 47), (2, 3, 64, 64)])
def test_logits_at_the_input_size(mobilenet: torch.nn.Module, shape: tuple[int, ...]) -> None:
    with torch.no_grad():
        logits = mobilenet(torch.randn(*shape))
    assert logits.shape == (shape[0], 7, *shape[2:])


def test_resnet50_head_has_the_asked_classes() -> None:
    model = build_deeplabv3(num_classes=5, backbone="resnet50")
    assert model.net.classifier[-1].out_channels == 5
    assert model.net.aux_classifier is None
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 40, 40)).shape == (1, 5, 40, 40)


def test_aux_head_in_training_mode_only() -> None:
    model = build_deeplabv3(backbone="mobilenet_v3_large", aux_loss=True).train()
    out = model(torch.randn(2, 3, 32, 32))
    assert set(out) == {"out", "aux"} and out["aux"].shape == (2, 7, 32, 32)
    assert isinstance(model.eval()(torch.randn(1, 3, 32, 32)), torch.Tensor)


def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every weight download fail the way it does without a network."""
    import urllib.error

    from lc_utils import models

    monkeypatch.setattr(models, "_UNAVAILABLE", set())

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no network in this test")

    monkeypatch.setattr("torch.hub.load_state_dict_from_url", refuse)
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", refuse, raising=False)


@pytest.mark.parametrize("weights", ["imagenet", "coco"])
def test_offline_fallback_warns_once(monkeypatch: pytest.MonkeyPatch, weights: str) -> None:
    _offline(monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = build_deeplabv3(backbone="mobilenet_v3_large", weights=weights)
    ours = [w for w in caught if issubclass(w.category, PretrainedWeightsWarning)]
    assert len(ours) == 1 and "random weights" in str(ours[0].message)
    assert model.weights is None and model.net.classifier[-1].out_channels == 7
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        build_deeplabv3(backbone="mobilenet_v3_large", weights=weights)
    assert not [w for w in again if issubclass(w.category, PretrainedWeightsWarning)]
    with pytest.raises(RuntimeError, match=f"could not load {weights} weights"):
        build_deeplabv3(backbone="mobilenet_v3_large", weights=weights, strict=True)


@pytest.mark.parametrize("weights", ["imagenet", "coco"])
def test_a_failed_download_leaves_the_seeded_random_model(monkeypatch: pytest.MonkeyPatch,
                                                          weights: str) -> None:
    """The first build of a process tries the network, the next ones do not: with the same seed both
    (and a model asked for no weights at all) start from the same random weights."""
    _offline(monkeypatch)
    states = []
    for asked in (weights, weights, None):
        torch.manual_seed(3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PretrainedWeightsWarning)
            states.append(build_deeplabv3(backbone="mobilenet_v3_large", weights=asked).state_dict())
        states[-1]["after"] = torch.rand(1)  # the generator moved on alike too
    first, second, random = states
    assert all(torch.equal(first[k], second[k]) and torch.equal(first[k], random[k]) for k in first)


def test_offline_strict_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _offline(monkeypatch)
    with pytest.raises(RuntimeError, match="could not load imagenet weights"):
        build_deeplabv3(backbone="mobilenet_v3_large", weights="imagenet", strict=True)


def test_local_full_model_file(tmp_path: Path, mobilenet: torch.nn.Module) -> None:
    path = tmp_path / "model.pth"
    torch.save(mobilenet.state_dict(), path)
    loaded = build_deeplabv3(backbone="mobilenet_v3_large", weights=path, strict=True).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), mobilenet(x))


def test_local_file_with_other_class_count_keeps_new_heads(tmp_path: Path) -> None:
    other = build_deeplabv3(num_classes=21, backbone="mobilenet_v3_large")
    path = tmp_path / "coco_like.pth"
    torch.save(other.net.state_dict(), path)  # torchvision's own key names
    model = build_deeplabv3(num_classes=7, backbone="mobilenet_v3_large", weights=path)
    torch.testing.assert_close(model.net.backbone["0"][0].weight, other.net.backbone["0"][0].weight)
    assert model.net.classifier[-1].out_channels == 7
    with pytest.raises(ValueError, match="shapes differ"):
        build_deeplabv3(num_classes=7, backbone="mobilenet_v3_large", weights=path, strict=True)


def test_local_backbone_file(tmp_path: Path) -> None:
    from torchvision.models import resnet50

    classifier_net = resnet50()
    path = tmp_path / "resnet50-imagenet.pth"
    torch.save(classifier_net.state_dict(), path)
    model = build_deeplabv3(backbone="resnet50", weights=path, strict=True)
    torch.testing.assert_close(model.net.backbone["conv1"].weight, classifier_net.conv1.weight)


def test_missing_local_file_and_bad_names(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        build_deeplabv3(weights=tmp_path / "nothing.pth")
    with pytest.raises(ValueError, match="backbone must be"):
        build_deeplabv3(backbone="vgg16")  # type: ignore[arg-type]


@pytest.mark.parametrize("backbone", ["mobilenet_v3_large", "resnet50"])
def test_batchnorm_momentum_is_set_on_every_layer(backbone: str) -> None:
    """torchvision gives MobileNetV3 momentum 0.01: running statistics that lag the weights."""
    layers = batchnorm_layers
    model = build_deeplabv3(backbone=backbone)
    assert layers(model) and {x.momentum for x in layers(model)} == {0.1}
    kept = build_deeplabv3(backbone=backbone, bn_momentum=None)
    # torchvision's own: 0.01 in MobileNetV3's backbone (the heads keep PyTorch's 0.1).
    assert (0.01 in {x.momentum for x in layers(kept)}) == (backbone == "mobilenet_v3_large")
