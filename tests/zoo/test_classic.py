"""zoo.classic: the classic CNNs build, run, and keep the patterns they are there for."""

import pytest
import torch
from helpers import random_tensor
from torch import nn

from quantlens.errors import UnknownNameError
from quantlens.zoo import classic


@pytest.mark.parametrize("name", list(classic.MODELS))
def test_each_model_maps_images_to_ten_logits_and_is_seeded(name, one_thread):
    a, b = classic.build(name).eval(), classic.build(name).eval()
    x = random_tensor(2, *classic.INPUT_SHAPE)
    with torch.no_grad():
        out = a(x)
        assert out.shape == (2, 10)
        assert torch.equal(out, b(x))
    assert not torch.equal(
        classic.build(name, seed=1).state_dict()[next(iter(a.state_dict()))],
        a.state_dict()[next(iter(a.state_dict()))],
    )


def test_channel_shuffle_interleaves_the_two_groups():
    x = torch.arange(6.0).reshape(1, 6, 1, 1)
    assert classic.channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]


def test_the_patterns_are_written_as_users_write_them():
    mnv2 = classic.build("mobilenet-v2")
    assert any(isinstance(m, nn.ReLU6) for m in mnv2.modules())
    assert (
        sum(isinstance(m, classic.InvertedResidual) and m.use_res_connect for m in mnv2.modules())
        >= 3
    )
    assert not any(isinstance(m, nn.BatchNorm2d) for m in classic.build("squeezenet").modules())


def test_an_unknown_name_lists_the_valid_ones():
    with pytest.raises(UnknownNameError, match="valid names: lenet, mobilenet-v2"):
        classic.build("resnet")
