"""The models of the compatibility matrix (benchmarks/compatibility.py): Hugging Face
architectures built offline from tiny configs, and the classic vision CNNs of
:mod:`quantlens.zoo.classic`, each with its calibration and test batches.

Nothing is downloaded: every Hugging Face model is ``XxxConfig(...)`` with small sizes and
seeded random weights. Random weights are enough to find out whether a method runs on an
architecture and whether the quantized model still computes the same function; they say
nothing about task accuracy.

Batches are the forms users have: image tensors for the CNNs; tokenized dicts
(``input_ids``, ``attention_mask`` with some padding, ``decoder_input_ids`` for
encoder-decoders) for the transformers, passed to the model as keyword arguments. The test
batch has a different batch size from the calibration batches, as in real use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from quantlens.zoo import classic

SEED = 0
CALIB_BATCHES, CALIB_SIZE, TEST_SIZE = (
    8,
    8,
    3,
)  # 1,024 calibration tokens: GPTQ needs many more than its 256 columns
SEQ, VOCAB, IMAGE = 16, 512, 32  # tokens per text, vocabulary, image side
# one small transformer size for every family: hidden 128 (a multiple of the default group
# size, like real models' widths), 2 layers, 4 heads, FFN 256
HIDDEN, LAYERS, HEADS, FFN = 128, 2, 4, 256
# weights drawn with std 1/sqrt(hidden) instead of the libraries' 0.02, so every block adds
# to the output about as much as a trained one does (at 0.02 the residual stream is the
# embeddings and even 2-bit weights leave the output's cosine at 0.999)
INIT = HIDDEN**-0.5


@dataclass(frozen=True)
class Case:
    """One model of the matrix.

    Attributes:
        name: its row name.
        family: ``"vision"`` (classic CNN or HF vision), ``"encoder"``, ``"decoder"``,
            ``"encoder-decoder"`` or ``"multimodal"``.
        build: makes the float model (train mode is fine; it is put in eval mode).
        inputs: ``inputs(batch_size, generator) -> batch`` (a tensor or a dict of tensors).
        outputs: the output fields whose values form the compared output (all flattened and
            concatenated); empty for a model that returns a tensor.
    """

    name: str
    family: str
    build: Callable[[], nn.Module]
    inputs: Callable[[int, torch.Generator], object]
    outputs: tuple[str, ...] = ()


def _images(channels: int = 3, size: int = IMAGE):
    return lambda n, g: torch.randn(n, channels, size, size, generator=g)


def _pixels(channels: int = 3, size: int = IMAGE):
    return lambda n, g: {"pixel_values": torch.randn(n, channels, size, size, generator=g)}


def _mask(n: int, g: torch.Generator) -> torch.Tensor:
    """Attention mask with the last sample right-padded by a random 1..SEQ/2 tokens."""
    mask = torch.ones(n, SEQ, dtype=torch.long)
    if n > 1:
        mask[-1, SEQ - int(torch.randint(1, SEQ // 2 + 1, (1,), generator=g)) :] = 0
    return mask


def _text(decoder: bool = False, vocab: int = VOCAB):
    def make(n: int, g: torch.Generator) -> dict:
        batch = {
            "input_ids": torch.randint(3, vocab, (n, SEQ), generator=g),
            "attention_mask": _mask(n, g),
        }
        if decoder:
            batch["decoder_input_ids"] = torch.randint(3, vocab, (n, SEQ // 2), generator=g)
        return batch

    return make


def _audio(n: int, g: torch.Generator) -> dict:
    return {
        "input_features": torch.randn(n, 16, 32, generator=g),
        "decoder_input_ids": torch.randint(3, VOCAB, (n, SEQ // 2), generator=g),
    }


def _text_and_image(n: int, g: torch.Generator) -> dict:
    return {**_text()(n, g), **_pixels()(n, g)}


def _hf(model_cls: str, config_cls: str, **config) -> Callable[[], nn.Module]:
    """A builder of ``transformers.<model_cls>(<config_cls>(**config))``, random weights."""

    def build() -> nn.Module:
        import transformers

        cfg = getattr(transformers, config_cls)(**config)
        return getattr(transformers, model_cls)(cfg)

    build.__qualname__ = model_cls
    return build


_TEXT = {"vocab_size": VOCAB, "max_position_embeddings": 64}
_BERT_LIKE = {
    **_TEXT,
    "initializer_range": INIT,
    "hidden_size": HIDDEN,
    "num_hidden_layers": LAYERS,
    "num_attention_heads": HEADS,
    "intermediate_size": FFN,
}
_LLAMA_LIKE = {**_BERT_LIKE, "num_key_value_heads": 2}
_VIT_LIKE = {
    "initializer_range": INIT,
    "image_size": IMAGE,
    "patch_size": 8,
    "hidden_size": HIDDEN,
    "num_hidden_layers": LAYERS,
    "num_attention_heads": HEADS,
    "intermediate_size": FFN,
}
_SEQ2SEQ = {
    "init_std": INIT,
    "vocab_size": VOCAB,
    "d_model": HIDDEN,
    "encoder_layers": LAYERS,
    "decoder_layers": LAYERS,
    "encoder_attention_heads": HEADS,
    "decoder_attention_heads": HEADS,
    "encoder_ffn_dim": FFN,
    "decoder_ffn_dim": FFN,
}
_TOKENS = {"pad_token_id": 1, "bos_token_id": 1, "eos_token_id": 2, "decoder_start_token_id": 1}

HF_CASES = [
    Case(
        "bert",
        "encoder",
        _hf("BertModel", "BertConfig", **_BERT_LIKE),
        _text(),
        ("last_hidden_state",),
    ),
    Case(
        "distilbert",
        "encoder",
        _hf(
            "DistilBertModel",
            "DistilBertConfig",
            **_TEXT,
            initializer_range=INIT,
            dim=HIDDEN,
            n_layers=LAYERS,
            n_heads=HEADS,
            hidden_dim=FFN,
        ),
        _text(),
        ("last_hidden_state",),
    ),
    Case(
        "roberta",
        "encoder",
        _hf("RobertaModel", "RobertaConfig", **_BERT_LIKE),
        _text(),
        ("last_hidden_state",),
    ),
    Case(
        "albert",
        "encoder",
        _hf("AlbertModel", "AlbertConfig", embedding_size=64, **_BERT_LIKE),
        _text(),
        ("last_hidden_state",),
    ),
    Case(
        "electra",
        "encoder",
        _hf("ElectraModel", "ElectraConfig", embedding_size=64, **_BERT_LIKE),
        _text(),
        ("last_hidden_state",),
    ),
    Case(
        "gpt2",
        "decoder",
        _hf(
            "GPT2LMHeadModel",
            "GPT2Config",
            initializer_range=INIT,
            bos_token_id=1,
            eos_token_id=2,
            vocab_size=VOCAB,
            n_embd=HIDDEN,
            n_layer=LAYERS,
            n_head=HEADS,
            n_inner=FFN,
            n_positions=64,
        ),
        _text(),
        ("logits",),
    ),
    Case(
        "gpt-neo",
        "decoder",
        _hf(
            "GPTNeoForCausalLM",
            "GPTNeoConfig",
            **_TEXT,
            initializer_range=INIT,
            hidden_size=HIDDEN,
            num_layers=LAYERS,
            num_heads=HEADS,
            intermediate_size=FFN,
            attention_types=[[["global", "local"], 1]],
            window_size=8,
        ),
        _text(),
        ("logits",),
    ),
    Case(
        "opt",
        "decoder",
        _hf(
            "OPTForCausalLM",
            "OPTConfig",
            **_TEXT,
            init_std=INIT,
            hidden_size=HIDDEN,
            num_hidden_layers=LAYERS,
            num_attention_heads=HEADS,
            ffn_dim=FFN,
            word_embed_proj_dim=HIDDEN,
        ),
        _text(),
        ("logits",),
    ),
    Case(
        "llama",
        "decoder",
        _hf("LlamaForCausalLM", "LlamaConfig", **_LLAMA_LIKE),
        _text(),
        ("logits",),
    ),
    Case(
        "mistral",
        "decoder",
        _hf("MistralForCausalLM", "MistralConfig", sliding_window=8, **_LLAMA_LIKE),
        _text(),
        ("logits",),
    ),
    Case(
        "qwen2",
        "decoder",
        _hf("Qwen2ForCausalLM", "Qwen2Config", **_LLAMA_LIKE),
        _text(),
        ("logits",),
    ),
    Case(
        "phi",
        "decoder",
        _hf("PhiForCausalLM", "PhiConfig", partial_rotary_factor=0.5, **_LLAMA_LIKE),
        _text(),
        ("logits",),
    ),
    Case(
        "t5",
        "encoder-decoder",
        _hf(
            "T5ForConditionalGeneration",
            "T5Config",
            vocab_size=VOCAB,
            d_model=HIDDEN,
            d_kv=HIDDEN // HEADS,
            d_ff=FFN,
            num_layers=LAYERS,
            num_heads=HEADS,
            decoder_start_token_id=0,
        ),
        _text(decoder=True),
        ("logits",),
    ),
    Case(
        "bart",
        "encoder-decoder",
        _hf("BartForConditionalGeneration", "BartConfig", **_SEQ2SEQ, max_position_embeddings=64),
        _text(decoder=True),
        ("logits",),
    ),
    Case(
        "whisper",
        "encoder-decoder",
        _hf(
            "WhisperForConditionalGeneration",
            "WhisperConfig",
            **_SEQ2SEQ,
            **_TOKENS,
            num_mel_bins=16,
            max_source_positions=16,
            max_target_positions=64,
        ),
        _audio,
        ("logits",),
    ),
    # vision models with their classification head (what users fine-tune), 100 classes
    Case(
        "vit",
        "vision",
        _hf("ViTForImageClassification", "ViTConfig", num_labels=100, **_VIT_LIKE),
        _pixels(),
        ("logits",),
    ),
    Case(
        "convnext",
        "vision",
        _hf(
            "ConvNextForImageClassification",
            "ConvNextConfig",
            num_labels=100,
            initializer_range=INIT,
            layer_scale_init_value=1.0,
            num_channels=3,
            hidden_sizes=[32, 64, 128, 256],
            depths=[1, 1, 1, 1],
            patch_size=2,
        ),
        _pixels(),
        ("logits",),
    ),
    Case(
        "mobilenet-v2-hf",
        "vision",
        _hf(
            "MobileNetV2ForImageClassification",
            "MobileNetV2Config",
            num_labels=100,
            initializer_range=INIT,
            image_size=IMAGE,
            depth_multiplier=0.35,
        ),
        _pixels(),
        ("logits",),
    ),
    Case(
        "clip",
        "multimodal",
        _hf(
            "CLIPModel",
            "CLIPConfig",
            projection_dim=HIDDEN,
            text_config={**_BERT_LIKE, "initializer_range": 0.02},
            vision_config={k: v for k, v in _VIT_LIKE.items() if k != "initializer_range"},
        ),
        _text_and_image,
        ("text_embeds", "image_embeds"),
    ),
]

VISION_CASES = [
    Case(name, "vision", lambda name=name: classic.build(name, seed=SEED), _images())
    for name in classic.MODELS
]

CASES: dict[str, Case] = {c.name: c for c in VISION_CASES + HF_CASES}


def build(case: Case) -> nn.Module:
    """The float model of ``case`` in eval mode, seeded; BatchNorm statistics are set from
    the calibration batches (as training would have left them), so Static and QAT see a
    model whose activations are on a realistic scale."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = case.build()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if norms:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below
        model.train()
        with torch.no_grad():
            for batch in calibration(case):
                run(model, batch)
        for m in norms:
            m.momentum = 0.1
    return model.eval()


def _batches(case: Case, sizes: list[int], seed: int) -> list:
    g = torch.Generator().manual_seed(seed)
    return [case.inputs(n, g) for n in sizes]


def calibration(case: Case) -> list:
    """``CALIB_BATCHES`` batches of ``CALIB_SIZE`` samples (the same every call)."""
    return _batches(case, [CALIB_SIZE] * CALIB_BATCHES, SEED + 1)


def test_batch(case: Case):
    """One batch of ``TEST_SIZE`` samples, different from the calibration batches."""
    return _batches(case, [TEST_SIZE], SEED + 2)[0]


def run(model: nn.Module, batch):
    """Call ``model`` on a batch: a dict as keyword arguments, a tensor positionally."""
    return model(**batch) if isinstance(batch, dict) else model(batch)


def main_output(case: Case, out) -> torch.Tensor:
    """The compared output of ``case``: its output fields flattened and concatenated per
    sample, ``(B, N)``."""
    if not case.outputs:
        return out.reshape(out.shape[0], -1)
    return torch.cat([out[key].reshape(out[key].shape[0], -1) for key in case.outputs], dim=1)
