"""Small models for the AWQ and SmoothQuant tests: a norm feeding a Linear with outlier input
channels, a post-LN block whose norm also feeds the residual, and a tiny Llama."""

import pytest
import torch
from helpers import generator
from torch import nn

WIDTH = 128


class NormLinear(nn.Module):
    """LayerNorm -> Linear, the norm's weight large on a few channels (activation outliers)."""

    def __init__(self, outliers: tuple[int, ...] = (3, 17), scale: float = 30.0):
        super().__init__()
        self.norm = nn.LayerNorm(WIDTH)
        self.fc = nn.Linear(WIDTH, WIDTH)
        with torch.no_grad():
            self.norm.weight[list(outliers)] = scale

    def forward(self, x):
        return self.fc(self.norm(x))


class PostNormBlock(nn.Module):
    """norm -> fc, with the norm's output also added back (as BERT's residual is): the norm
    cannot take a fold."""

    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(WIDTH)
        self.fc = nn.Linear(WIDTH, WIDTH)

    def forward(self, x):
        h = self.norm(x)
        return h + self.fc(h)


def norm_linear() -> NormLinear:
    torch.manual_seed(0)
    return NormLinear().eval()


def rows(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, WIDTH, generator=generator(seed))


CALIB = [rows(64, 0), rows(64, 1)]
TEST = rows(64, 9)


def tiny_llama():
    """A 2-layer Llama built offline from a LlamaConfig, norms with a few outlier channels."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(torch.rand(p.shape, generator=generator(1)) + 0.5)
        model.model.layers[0].input_layernorm.weight[3] = 40.0
        model.model.layers[1].post_attention_layernorm.weight[5] = 40.0
    return model


def llama_tokens(seed: int, n: int = 2) -> dict:
    return {"input_ids": torch.randint(0, 64, (n, 16), generator=generator(seed))}


LLAMA_CALIB = [llama_tokens(0), llama_tokens(1)]
