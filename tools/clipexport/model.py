"""The CLIP ViT architecture of OpenAI's CLIP, written for export and training.

The parameter names match OpenAI's `model.py` exactly so a released
state_dict loads with `load_state_dict(strict=True)`. The forward pass is
written for ONNX export to plain operators that TensorRT 8.x accepts: the
attention is spelled out with MatMul/Softmax instead of
nn.MultiheadAttention (whose fused fast path exports badly), and the text
pooling looks for the end-of-text token by equality, not by `argmax` over
the ids, so vocabularies whose EOT is not the largest id still work.
"""

import math
import warnings
from collections import OrderedDict
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

HEAD_WIDTH = 64  # OpenAI derives the head count as width // 64.


@dataclass
class CLIPConfig:
    embed_dim: int
    image_resolution: int
    vision_layers: int
    vision_width: int
    vision_patch_size: int
    context_length: int
    vocab_size: int
    transformer_width: int
    transformer_layers: int

    @property
    def vision_heads(self):
        return self.vision_width // HEAD_WIDTH

    @property
    def transformer_heads(self):
        return self.transformer_width // HEAD_WIDTH

    @property
    def eot_token(self):
        # The BPE vocabulary ends with <|startoftext|>, <|endoftext|>.
        return self.vocab_size - 1

    def validate(self):
        """Raises ValueError naming the first inconsistent field."""
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"CLIP config: {name} must be a positive integer, got {value!r}")
        for name in ("vision_width", "transformer_width"):
            width = getattr(self, name)
            if width % HEAD_WIDTH:
                raise ValueError(
                    f"CLIP config: {name}={width} is not a multiple of {HEAD_WIDTH} "
                    f"(heads are derived as width // {HEAD_WIDTH}, as in OpenAI's build_model)")
        if self.image_resolution % self.vision_patch_size:
            raise ValueError(
                f"CLIP config: image_resolution={self.image_resolution} is not a multiple of "
                f"vision_patch_size={self.vision_patch_size}")
        if self.vocab_size < 3:
            raise ValueError(f"CLIP config: vocab_size={self.vocab_size} is too small")
        return self

    def bundle_config(self):
        """The immich-layout config.json content for this architecture."""
        return {
            "embed_dim": self.embed_dim,
            "vision_cfg": {
                "image_size": self.image_resolution,
                "layers": self.vision_layers,
                "width": self.vision_width,
                "patch_size": self.vision_patch_size,
                "heads": self.vision_heads,
            },
            "text_cfg": {
                "context_length": self.context_length,
                "vocab_size": self.vocab_size,
                "width": self.transformer_width,
                "heads": self.transformer_heads,
                "layers": self.transformer_layers,
            },
        }


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 even for half inputs, as OpenAI's is."""

    def forward(self, x):
        if x.dtype == torch.float32:
            # Skipping the no-op casts keeps Cast nodes out of the ONNX graph.
            return super().forward(x)
        orig_type = x.dtype
        return super().forward(x.type(torch.float32)).type(orig_type)


def _as(x, dtype):
    return x if x.dtype == dtype else x.type(dtype)


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Attention(nn.Module):
    """Multi-head self-attention with nn.MultiheadAttention's parameter names
    (in_proj_weight, in_proj_bias, out_proj) and its arithmetic: q is scaled
    by 1/sqrt(head_dim) before the product, as PyTorch does."""

    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.head_dim = width // heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x, attn_mask=None):
        # x: [batch, tokens, width]
        batch, tokens, width = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.chunk(3, dim=-1)

        def split_heads(t):
            return t.reshape(batch, tokens, self.heads, self.head_dim).transpose(1, 2)

        q = split_heads(q) * (1.0 / math.sqrt(self.head_dim))
        k = split_heads(k)
        v = split_heads(v)
        scores = torch.matmul(q, k.transpose(-2, -1))
        if attn_mask is not None:
            scores = scores + attn_mask
        weights = torch.softmax(scores, dim=-1)
        out = torch.matmul(weights, v).transpose(1, 2).reshape(batch, tokens, width)
        return self.out_proj(out)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width, heads, attn_mask=None):
        super().__init__()
        self.attn = Attention(width, heads)
        self.ln_1 = LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, width * 4)),
            ("gelu", QuickGELU()),
            ("c_proj", nn.Linear(width * 4, width)),
        ]))
        self.ln_2 = LayerNorm(width)
        self.attn_mask = attn_mask

    def forward(self, x):
        mask = None
        if self.attn_mask is not None:
            mask = self.attn_mask.to(dtype=x.dtype, device=x.device)
        x = x + self.attn(self.ln_1(x), mask)
        x = x + self.mlp(self.ln_2(x))
        return x


class Transformer(nn.Module):
    def __init__(self, width, layers, heads, attn_mask=None):
        super().__init__()
        self.width = width
        self.layers = layers
        self.resblocks = nn.Sequential(
            *[ResidualAttentionBlock(width, heads, attn_mask) for _ in range(layers)])

    def forward(self, x):
        return self.resblocks(x)


class VisionTransformer(nn.Module):
    def __init__(self, input_resolution, patch_size, width, layers, heads, output_dim):
        super().__init__()
        self.input_resolution = input_resolution
        self.output_dim = output_dim
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        scale = width ** -0.5
        grid = input_resolution // patch_size
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def forward(self, x):
        x = self.conv1(x)  # [N, width, grid, grid]
        x = x.flatten(2).transpose(1, 2)  # [N, grid*grid, width]
        cls = _as(self.class_embedding, x.dtype).reshape(1, 1, -1).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1)
        x = x + _as(self.positional_embedding, x.dtype)
        x = self.ln_pre(x)
        x = self.transformer(x)
        x = self.ln_post(x[:, 0, :])
        return x @ self.proj


def causal_mask(context_length):
    """Additive mask: -inf above the diagonal so a token sees only its past."""
    mask = torch.empty(context_length, context_length)
    mask.fill_(float("-inf"))
    mask.triu_(1)
    return mask


class CLIP(nn.Module):
    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.context_length = cfg.context_length
        self.vocab_size = cfg.vocab_size
        self.visual = VisionTransformer(
            input_resolution=cfg.image_resolution,
            patch_size=cfg.vision_patch_size,
            width=cfg.vision_width,
            layers=cfg.vision_layers,
            heads=cfg.vision_heads,
            output_dim=cfg.embed_dim,
        )
        # A buffer would add a key OpenAI's state_dict lacks, breaking strict
        # loading, so the mask is a plain attribute shared by the blocks.
        self.transformer = Transformer(
            width=cfg.transformer_width,
            layers=cfg.transformer_layers,
            heads=cfg.transformer_heads,
            attn_mask=causal_mask(cfg.context_length),
        )
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.transformer_width)
        self.positional_embedding = nn.Parameter(torch.empty(cfg.context_length, cfg.transformer_width))
        self.ln_final = LayerNorm(cfg.transformer_width)
        self.text_projection = nn.Parameter(torch.empty(cfg.transformer_width, cfg.embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))
        self.initialize_parameters()

    def initialize_parameters(self):
        """OpenAI's initialisation, so random bundles have realistic scales."""
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        width, layers = self.transformer.width, self.transformer.layers
        proj_std = (width ** -0.5) * ((2 * layers) ** -0.5)
        attn_std = width ** -0.5
        fc_std = (2 * width) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=width ** -0.5)

    @property
    def dtype(self):
        return self.visual.conv1.weight.dtype

    def encode_image(self, image):
        return self.visual(_as(image, self.dtype))

    def encode_text(self, text):
        x = _as(self.token_embedding(text), self.dtype)  # [N, ctx, width]
        x = x + _as(self.positional_embedding, self.dtype)
        x = self.transformer(x)
        x = _as(self.ln_final(x), self.dtype)
        return pool_eot(x, text, self.cfg.eot_token) @ self.text_projection

    def forward(self, image, text):
        image_features = self.encode_image(image)
        text_features = self.encode_text(text)
        image_features = image_features / image_features.norm(dim=1, keepdim=True)
        text_features = text_features / text_features.norm(dim=1, keepdim=True)
        logit_scale = self.logit_scale.exp()
        logits_per_image = logit_scale * image_features @ text_features.t()
        return logits_per_image, logits_per_image.t()


def pool_eot(x, text, eot_token):
    """Picks each row's features at its first end-of-text token.

    OpenAI uses text.argmax(-1), which is only right while EOT is the
    largest id. Equality works for any vocabulary. The mask is cast to float
    before ArgMax because TensorRT 8.x's ArgMax takes FP32/FP16 only, and the
    gather is a GatherElements over a batch-sized index, which exports to
    plain ops with a dynamic batch. Equal compares int32 with int32, which
    TensorRT 8.x's Equal supports.
    """
    with warnings.catch_warnings():
        # The tracer warns that torch.tensor becomes a constant: that is the intent.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        eot = torch.tensor(eot_token, dtype=text.dtype)  # a Python int would upcast the ids to int64
    eot_index = (text == eot).to(torch.float32).argmax(dim=-1)  # [N]
    index = eot_index.reshape(-1, 1, 1).expand(-1, 1, x.shape[-1])
    # [:, 0] rather than squeeze(1): squeeze of a dynamic dim exports as an If.
    return torch.gather(x, 1, index)[:, 0]


NON_WEIGHT_KEYS = ("input_resolution", "context_length", "vocab_size")


class CheckpointError(ValueError):
    pass


def config_from_state_dict(state_dict):
    """Infers the architecture from the weights the way OpenAI's build_model
    does. Raises CheckpointError naming the missing key."""

    def need(key):
        if key not in state_dict:
            raise CheckpointError(f"not a CLIP ViT checkpoint: key {key!r} is missing")
        return state_dict[key]

    if "visual.proj" not in state_dict and any(k.startswith("visual.layer1.") for k in state_dict):
        raise CheckpointError(
            "this is a CLIP ModifiedResNet checkpoint (RN50 family); only ViT image towers are supported")
    conv = need("visual.conv1.weight")
    need("visual.proj")
    if conv.dim() != 4:
        raise CheckpointError(f"visual.conv1.weight has shape {tuple(conv.shape)}, want 4 dimensions")
    vision_width = conv.shape[0]
    vision_patch_size = conv.shape[-1]
    vision_layers = len({k.split(".")[3] for k in state_dict
                         if k.startswith("visual.transformer.resblocks.") and k.endswith(".attn.in_proj_weight")})
    if vision_layers == 0:
        raise CheckpointError("not a CLIP ViT checkpoint: no visual.transformer.resblocks.N keys")
    grid = round((need("visual.positional_embedding").shape[0] - 1) ** 0.5)
    image_resolution = vision_patch_size * grid

    embed_dim = need("text_projection").shape[1]
    context_length = need("positional_embedding").shape[0]
    vocab_size = need("token_embedding.weight").shape[0]
    transformer_width = need("ln_final.weight").shape[0]
    transformer_layers = len({k.split(".")[2] for k in state_dict
                              if k.startswith("transformer.resblocks.")})
    if transformer_layers == 0:
        raise CheckpointError("not a CLIP checkpoint: no transformer.resblocks.N keys")
    try:
        return CLIPConfig(
            embed_dim=int(embed_dim),
            image_resolution=int(image_resolution),
            vision_layers=vision_layers,
            vision_width=int(vision_width),
            vision_patch_size=int(vision_patch_size),
            context_length=int(context_length),
            vocab_size=int(vocab_size),
            transformer_width=int(transformer_width),
            transformer_layers=transformer_layers,
        ).validate()
    except ValueError as err:
        raise CheckpointError(str(err)) from None


def build_model(state_dict):
    """A float32 CLIP in eval mode holding the checkpoint's weights."""
    state_dict = {k: v for k, v in state_dict.items() if k not in NON_WEIGHT_KEYS}
    cfg = config_from_state_dict(state_dict)
    model = CLIP(cfg)
    try:
        model.load_state_dict({k: v.float() for k, v in state_dict.items()}, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint does not match the CLIP ViT architecture: {err}") from None
    return model.float().eval()


# Sizes for --random-init. "tiny" is the reference checkpoint's size.
ARCHITECTURES = {
    "tiny": CLIPConfig(64, 224, 2, 128, 32, 77, 49408, 128, 2),
    "ViT-B/32": CLIPConfig(512, 224, 12, 768, 32, 77, 49408, 512, 12),
    "ViT-B/16": CLIPConfig(512, 224, 12, 768, 16, 77, 49408, 512, 12),
    "ViT-L/14": CLIPConfig(768, 224, 24, 1024, 14, 77, 49408, 768, 12),
    "ViT-L/14@336px": CLIPConfig(768, 336, 24, 1024, 14, 77, 49408, 768, 12),
}


def random_model(arch, seed=0):
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    torch.manual_seed(seed)
    return CLIP(ARCHITECTURES[arch]).float().eval()
