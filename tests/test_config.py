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
    ({"optim.momentum": -5}, r"'optim\.momentum': expected in \[0, 1\), got -5\.0"),
    ({"optim.momentum": 1}, r"'optim\.momentum': expected in \[0, 1\), got 1\.0"),
    ({"optim.weight_decay": -1}, r"'optim\.weight_decay': expected >= 0, got -1\.0"),
    ({"optim.lr_factor": 10}, r"'optim\.lr_factor': expected in \(0, 1\).*got 10\.0"),
    ({"optim.lr_factor": 0}, r"'optim\.lr_factor': expected in \(0, 1\).*got 0\.0"),
    ({"optim.trunk_lr_scale": 0}, r"'optim\.trunk_lr_scale': expected > 0 \(a frozen trunk is the linear_probe.*0\.0"),
    ({"data.num_workers": -1}, r"'data\.num_workers': expected >= 0.*got -1"),
    ({"device": "tpu"}, r"'device': expected auto, cpu, cuda or cuda:<index>, got 'tpu'"),
    ({"device": "cuda:x"}, r"'device': expected .*got 'cuda:x'"),
    ({"pretrain.lr": "fast"}, r"pretrain\.lr.*expected float, got str 'fast'"),
    ({"pretrain.epochs": "1e2"}, r"pretrain\.epochs.*expected int, got str '1e2'"),
])
def test_bad_config_names_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config("cpu", overrides)


def test_exponent_floats_yaml_leaves_as_strings_are_floats_where_a_float_is_expected():
    import yaml

    assert yaml.safe_load("1e-3") == "1e-3"  # PyYAML's YAML 1.1 wants 1.0e-3
    cfg = load_config("cpu", {"pretrain.lr": "1e-3", "pretrain.min_lr": ".5e-4", "embed.lr": "1E5",
                              "loss.alpha": "2e-4", "finetune.lr": "1.5e+2"})
    assert (cfg.pretrain.lr, cfg.pretrain.min_lr, cfg.embed.lr, cfg.loss.alpha, cfg.finetune.lr) == (
        1e-3, 5e-5, 1e5, 2e-4, 150.0)
    with pytest.raises(ConfigError, match=r"'loss\.alpha': expected >= 0, got -0\.0002"):
        load_config("cpu", {"loss.alpha": "-2e-4"})
    assert load_config("cpu", {"device": "cuda:1"}).device == "cuda:1"


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(ConfigError, match="cpu, features, lite, paper"):
        load_config("gpu")


def test_config_is_frozen():
    cfg = load_config()
    with pytest.raises(AttributeError):
        cfg.seed = 3
