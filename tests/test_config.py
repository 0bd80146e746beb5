import pytest

from retdm.config import load_config
from retdm.errors import ConfigError


def test_cpu_profile_is_default_and_paper_profile_is_the_paper():
    cpu = load_config()
    assert cpu.profile == "cpu" and cpu.model.backbone == "small_cnn" and cpu.data.image_size == 64
    paper = load_config("paper")
    assert (paper.model.backbone, paper.data.image_size, paper.data.resize, paper.data.batch_size) == ("vgg16", 224, 256, 256)
    assert (paper.pretrain.lr, paper.pretrain.min_lr, paper.loss.k, paper.loss.lam) == (0.1, 0.01, 10, 1.0)
    assert (paper.optim.momentum, paper.optim.weight_decay) == (0.9, 1e-4)


def test_overrides_apply_and_ints_widen_to_float():
    cfg = load_config("cpu", {"loss.alpha": 2, "pretrain.epochs": 3})
    assert cfg.loss.alpha == 2.0 and isinstance(cfg.loss.alpha, float) and cfg.pretrain.epochs == 3


@pytest.mark.parametrize("overrides, match", [
    ({"loss.alpah": 1.0}, r"unknown config key.*loss\.alpah.*alpha"),
    ({"pretrain.epochs": "3"}, r"pretrain\.epochs.*expected int, got str"),
    ({"loss.way2": "cache"}, r"loss\.way2.*one of \('bank', 'forward'\)"),
    ({"data.resize": 10}, r"data\.resize.*>= data\.image_size"),
    ({"loss.k": 0}, r"loss\.k"),
])
def test_bad_config_names_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config("cpu", overrides)


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(ConfigError, match="cpu, features, lite, paper"):
        load_config("gpu")


def test_config_is_frozen():
    cfg = load_config()
    with pytest.raises(AttributeError):
        cfg.seed = 3
