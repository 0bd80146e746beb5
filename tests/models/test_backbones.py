"""Contract tests run over every registered backbone (timm style), plus weight loading and errors.

Inputs are 64 px and tiny batches so the whole file stays fast on 2 CPU cores; nothing here
touches the network: pretrained weights come from the efficientnet-lite0 package or from files
the tests write into a temporary torch hub directory.
"""

import pytest
import torch
import torchvision

from retdm.errors import ConfigError
from retdm.models.backbones import (
    BACKBONES,
    Backbone,
    build_backbone,
    efficientnet_lite0_weights_path,
)
from retdm.registry import UnknownNameError

NAMES = BACKBONES.names()
HEAVY = {"vgg16", "resnet50"}  # one image each: their cost is per image, the contract is not
# Every backbone untrained, plus efficientnet_lite0 with its ImageNet weights (they ship locally).
CASES = [pytest.param(n, False, id=n) for n in NAMES] + [
    pytest.param("efficientnet_lite0", True, id="efficientnet_lite0-pretrained")
]


def images(name: str, size: int | tuple[int, int] = 64, seed: int = 0) -> torch.Tensor:
    """A normalised-looking random batch, (B, 3, H, W)."""
    h, w = (size, size) if isinstance(size, int) else size
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1 if name in HEAVY else 2, 3, h, w, generator=g) * 2 - 1


@pytest.fixture(scope="module")
def built():
    """``built(name, pretrained, embed_dim)``: each backbone built once per module.

    The shape and gradient tests share instances because building is the slow part for the big
    ones (VGG-16's 100M-weight fc6 init takes seconds on 2 cores); each test sets the mode it needs.
    """
    cache: dict[tuple, Backbone] = {}

    def get(name: str, pretrained: bool, embed_dim: int) -> Backbone:
        key = (name, pretrained, embed_dim)
        if key not in cache:
            torch.manual_seed(0)
            cache[key] = build_backbone(name, embed_dim=embed_dim, pretrained=pretrained)
        return cache[key]

    yield get
    cache.clear()


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """An empty torch hub directory; returns its checkpoints/ folder (not created)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # a set_dir() elsewhere would beat TORCH_HOME
    assert torch.hub.get_dir() == str(tmp_path / "hub")
    return tmp_path / "hub" / "checkpoints"


def test_registry_holds_the_documented_backbones():
    assert NAMES == ["efficientnet_lite0", "resnet18", "resnet50", "small_cnn", "vgg16"]
    assert all(BACKBONES.help(n) for n in NAMES)  # one-line help from the builder docstrings


@pytest.mark.parametrize("embed_dim", [512, 40])
@pytest.mark.parametrize("name, pretrained", CASES)
def test_output_shape_metadata_and_head_split(built, name, pretrained, embed_dim):
    bb = built(name, pretrained, embed_dim).eval()
    assert isinstance(bb, Backbone) and bb.embed_dim == embed_dim
    assert (bb.weights != "none") == pretrained
    for stats in (bb.mean, bb.std):
        assert isinstance(stats, tuple) and len(stats) == 3 and all(isinstance(v, float) for v in stats)
    assert min(bb.std) > 0

    x = images(name)
    with torch.no_grad():
        out = bb(x)
        feats = bb.forward_features(x)
        again = bb.forward_head(feats)
    assert out.shape == (x.shape[0], embed_dim)
    assert torch.isfinite(out).all() and out.abs().sum() > 0
    assert feats.dim() == 4 and feats.shape[0] == x.shape[0]
    torch.testing.assert_close(again, out)  # forward == forward_head ∘ forward_features


@pytest.mark.parametrize("name, pretrained", CASES)
def test_every_parameter_gets_a_finite_nonzero_gradient(built, name, pretrained):
    bb = built(name, pretrained, 512).train()
    bb.zero_grad(set_to_none=True)
    # Dropout and EfficientNet's drop-connect masks are random, and drop-connect can skip a whole
    # block for every image of a tiny batch (zero gradient for its weights: seed 4 does that to
    # block 6 at batch 2). Seed 0 keeps every block, so the non-zero check below is deterministic.
    torch.manual_seed(0)
    bb(images(name)).sum().backward()

    params = [(n, p) for n, p in bb.named_parameters() if p.requires_grad]
    assert params
    assert [n for n, p in params if p.grad is None] == []
    assert [n for n, p in params if not torch.isfinite(p.grad).all()] == []
    assert [n for n, p in params if not p.grad.any()] == []


@pytest.mark.parametrize("name", ["small_cnn", "efficientnet_lite0"])
@pytest.mark.parametrize("size", [32, (57, 75), 96])
def test_other_and_odd_input_sizes(name, size):
    bb = build_backbone(name, embed_dim=8).eval()
    with torch.no_grad():
        out = bb(images(name, size))
    assert out.shape == (2, 8) and torch.isfinite(out).all()


def test_efficientnet_lite0_pretrained_is_the_packaged_checkpoint():
    bb = build_backbone("efficientnet_lite0", embed_dim=16, pretrained=True)
    path = efficientnet_lite0_weights_path()
    assert bb.weights == f"imagenet:{path.name}" == "imagenet:efficientnet-lite0-57934424.pth"
    state = torch.load(path, map_location="cpu", weights_only=True)
    torch.testing.assert_close(bb.net._conv_stem.weight, state["_conv_stem.weight"])
    torch.testing.assert_close(bb.net._bn1.running_var, state["_bn1.running_var"])  # buffers too
    assert bb.net._fc.weight.shape == (16, 1280)  # the 1000-class classifier is gone
    assert bb.mean == bb.std == (0.5, 0.5, 0.5)  # TF-Lite weights expect [-1, 1] inputs


def test_vgg16_pretrained_without_the_file_says_where_and_what_to_fetch(empty_hub):
    url = torchvision.models.VGG16_Weights.IMAGENET1K_V1.url
    with pytest.raises(ConfigError) as info:
        build_backbone("vgg16", pretrained=True)
    msg = str(info.value)
    assert "vgg16-397923af.pth" in msg and url in msg
    assert str(empty_hub / "vgg16-397923af.pth") in msg
    assert not empty_hub.exists()  # nothing downloaded, nothing created


def test_resnet18_pretrained_loads_from_the_hub_cache(empty_hub):
    torch.manual_seed(1)
    ref = torchvision.models.resnet18(weights=None)
    empty_hub.mkdir(parents=True)
    torch.save(ref.state_dict(), empty_hub / "resnet18-f37072fd.pth")

    bb = build_backbone("resnet18", embed_dim=8, pretrained=True)
    assert bb.weights == "imagenet:resnet18-f37072fd.pth"
    torch.testing.assert_close(bb.net.layer4[1].conv2.weight, ref.layer4[1].conv2.weight)
    torch.testing.assert_close(bb.net.bn1.running_mean, ref.bn1.running_mean)
    assert bb.net.fc.weight.shape == (8, 512)


@pytest.mark.parametrize("content, match", [
    (b"not a checkpoint", r"cannot read pretrained weights .*resnet18-f37072fd\.pth"),
    (None, r"resnet18-f37072fd\.pth do not match the architecture"),
])
def test_unusable_checkpoint_raises_config_error(empty_hub, content, match):
    empty_hub.mkdir(parents=True)
    path = empty_hub / "resnet18-f37072fd.pth"
    if content is None:
        torch.save({"conv1.weight": torch.zeros(1)}, path)  # readable, but another architecture
    else:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=match):
        build_backbone("resnet18", pretrained=True)


def test_small_cnn_has_no_pretrained_weights():
    with pytest.raises(ConfigError, match="small_cnn has no pretrained weights.*vgg16"):
        build_backbone("small_cnn", pretrained=True)


@pytest.mark.parametrize("embed_dim", [0, -3, 2.5, "512", True])
def test_bad_embed_dim_raises_config_error(embed_dim):
    with pytest.raises(ConfigError, match="embed_dim must be a positive integer"):
        build_backbone("small_cnn", embed_dim=embed_dim)


def test_non_bool_pretrained_raises_config_error():
    with pytest.raises(ConfigError, match="pretrained must be true or false"):
        build_backbone("small_cnn", pretrained="false")


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(UnknownNameError) as info:
        build_backbone("vgg19")
    assert isinstance(info.value, KeyError)
    assert "vgg19" in str(info.value) and "small_cnn" in str(info.value)


def test_registering_a_duplicate_name_raises():
    with pytest.raises(ValueError, match="already registered"):
        BACKBONES.register("small_cnn")(lambda **kw: None)
    assert BACKBONES.get("small_cnn").__name__ == "small_cnn"  # the original is untouched


@pytest.mark.parametrize("image, expected", [
    ("china.jpg", {"bell cote", "stupa", "monastery", "palace", "church", "pagoda"}),  # a Chinese temple; here: bell cote
    ("flower.jpg", {"daisy"}),
])
def test_efficientnet_lite0_trunk_and_preprocessing_recognise_imagenet_classes(image, expected):
    """The trunk we fine-tune, fed through the backbone's own preprocessing (TestTransform with its
    mean/std) and topped with the checkpoint's own 1000-class layer, names what is in the photo."""
    from sklearn.datasets import load_sample_image
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    from retdm.data.transforms import TestTransform, TransformSpec

    bb = build_backbone("efficientnet_lite0", pretrained=True).eval()
    state = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    pixels = torch.from_numpy(load_sample_image(image).copy()).permute(2, 0, 1)  # (3, H, W) uint8
    x = TestTransform(TransformSpec(224, 256, bb.mean, bb.std))(pixels)[None]  # (1, 3, 224, 224)
    with torch.no_grad():
        pooled = torch.flatten(bb.net._avg_pooling(bb.forward_features(x)), 1)  # (1, 1280)
        logits = pooled @ state["_fc.weight"].T + state["_fc.bias"]  # (1, 1000)
    top = [_IMAGENET_CATEGORIES[i] for i in logits[0].topk(3).indices]
    assert top[0] in expected, top
