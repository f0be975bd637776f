"""The models users bring (issue 14): transformers, timm and torchvision architectures beyond
the torchvision zoo of ``test_zoo.py``, randomly initialised from small configs (nothing
downloads), each with a seeded example batch and a second batch of another size.

``ZOO`` maps a name to ``(builder, quick)``; ``build(name, batch)`` returns ``(model, inputs)``
with ``model`` in eval mode, its batch-norm statistics randomised (``_helpers.randomize_``) and
its outputs a tensor. Shared by ``test_zoo_models.py`` and ``benchmarks/bench_zoo.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from _helpers import randomize_

SEQ = 16
VOCAB = 500
IMAGE = 64


def _ids(batch: int, seed: int) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, SEQ), generator=torch.Generator().manual_seed(seed))


class _Logits(nn.Module):
    """A Hugging Face model with a tensor output (``logits`` or ``last_hidden_state``)."""

    def __init__(self, model: nn.Module, with_mask: bool = False):
        super().__init__()
        self.model, self.with_mask = model, with_mask

    def forward(self, ids, mask=None):
        out = self.model(input_ids=ids, attention_mask=mask) if self.with_mask else self.model(ids)
        return out.logits if hasattr(out, "logits") else out.last_hidden_state


def _padding_mask(batch: int) -> torch.Tensor:
    """Ones, with the later samples padded (sample i keeps SEQ - 3 i tokens, at least 4)."""
    mask = torch.ones(batch, SEQ, dtype=torch.long)
    for i in range(batch):
        mask[i, max(4, SEQ - 3 * i) :] = 0
    return mask


def _gpt2():
    import transformers as T

    cfg = T.GPT2Config(
        n_layer=2, n_embd=64, n_head=4, vocab_size=VOCAB, n_positions=64, use_cache=False,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return _Logits(T.GPT2LMHeadModel(cfg))


def _bert():
    import transformers as T

    cfg = T.BertConfig(
        num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128,
        vocab_size=VOCAB,
    )  # fmt: skip
    return _Logits(T.BertModel(cfg), with_mask=True)


def _llama():
    import transformers as T

    cfg = T.LlamaConfig(
        num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=128, vocab_size=VOCAB, use_cache=False,
    )  # fmt: skip
    return _Logits(T.LlamaForCausalLM(cfg))


def _t5_encoder():
    import transformers as T

    cfg = T.T5Config(num_layers=2, d_model=64, num_heads=4, d_kv=16, d_ff=128, vocab_size=VOCAB)
    return _Logits(T.T5EncoderModel(cfg))


def _timm(name: str, **kw) -> Callable[[], nn.Module]:
    def build():
        import timm

        return timm.create_model(name, pretrained=False, num_classes=10, **kw)

    return build


def _swin_t():
    import torchvision

    return torchvision.models.swin_t(weights=None)


class UNet(nn.Module):
    """A two-level U-Net: strided conv down, nearest and bilinear upsampling, skip concats."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.enc1 = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU())
        self.enc2 = nn.Sequential(nn.Conv2d(c, 2 * c, 3, 2, 1), nn.BatchNorm2d(2 * c), nn.ReLU())
        self.mid = nn.Sequential(nn.Conv2d(2 * c, 4 * c, 3, 2, 1), nn.SiLU())
        self.dec2 = nn.Conv2d(6 * c, 2 * c, 3, padding=1)
        self.dec1 = nn.Conv2d(3 * c, c, 3, padding=1)
        self.head = nn.Conv2d(c, 2, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        m = self.mid(e2)
        d2 = F.relu(self.dec2(torch.cat([F.interpolate(m, scale_factor=2.0), e2], 1)))
        up = F.interpolate(d2, size=e1.shape[2:], mode="bilinear", align_corners=False)
        return self.head(F.relu(self.dec1(torch.cat([up, e1], 1))))


def _text(batch: int, seed: int, with_mask: bool) -> tuple[torch.Tensor, ...]:
    return (_ids(batch, seed), _padding_mask(batch)) if with_mask else (_ids(batch, seed),)


def _image(batch: int, seed: int) -> tuple[torch.Tensor, ...]:
    return (torch.randn(batch, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(seed)),)


# name -> (builder, kind, quick): quick models run in `make test`, the rest in `make test-all`.
ZOO: dict[str, tuple[Callable[[], nn.Module], str, bool]] = {
    "gpt2": (_gpt2, "text", True),
    "bert_padded": (_bert, "text+mask", True),
    "llama": (_llama, "text", True),
    "t5_encoder": (_t5_encoder, "text", True),
    "unet": (UNet, "image", True),
    "convnextv2_atto": (_timm("convnextv2_atto"), "image", False),
    "swin_t": (_swin_t, "image", False),
    "tf_efficientnetv2_b0": (_timm("tf_efficientnetv2_b0"), "image", False),
    "mobilevit_xxs": (_timm("mobilevit_xxs"), "image", False),
    "levit_128s": (_timm("levit_128s", img_size=IMAGE), "image", False),
    "deit_tiny": (_timm("deit_tiny_patch16_224", img_size=IMAGE), "image", False),
    "resnet26d": (_timm("resnet26d"), "image", False),
    "ghostnet_100": (_timm("ghostnet_100"), "image", False),
    "efficientnet_lite0": (_timm("efficientnet_lite0"), "image", False),
    "poolformer_s12": (_timm("poolformer_s12"), "image", False),
    "mixer_s16": (_timm("mixer_s16_224", img_size=IMAGE), "image", False),
    "regnety_002": (_timm("regnety_002"), "image", False),
    "mobilenetv4_conv_small": (_timm("mobilenetv4_conv_small"), "image", False),
}


def build(name: str) -> nn.Module:
    """The zoo model ``name``, seeded, in eval mode, with informative outputs."""
    builder, _, _ = ZOO[name]
    torch.manual_seed(0)
    return randomize_(builder().eval())


def inputs(name: str, batch: int, seed: int) -> tuple[torch.Tensor, ...]:
    """A seeded batch of ``batch`` samples for zoo model ``name``."""
    kind = ZOO[name][1]
    if kind == "image":
        return _image(batch, seed)
    return _text(batch, seed, with_mask=kind == "text+mask")
