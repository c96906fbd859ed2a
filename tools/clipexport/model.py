"""OpenAI's CLIP, both image towers (VisionTransformer and ModifiedResNet),
written for export and training.

The parameter names match OpenAI's `model.py` exactly so a released
state_dict loads with `load_state_dict(strict=True)`. The forward pass is
written for ONNX export to plain operators that TensorRT 8.x accepts: the
attention (the ViT's and the ResNet's attention pooling) is spelled out
with MatMul/Softmax instead of nn.MultiheadAttention or
F.multi_head_attention_forward (whose fused paths export badly), and the
text pooling looks for the end-of-text token by equality, not by `argmax`
over the ids, so vocabularies whose EOT is not the largest id still work.
"""

import math
import warnings
from collections import OrderedDict
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

HEAD_WIDTH = 64  # OpenAI derives the head count as width // 64.
# ModifiedResNet: the feature width after layer4 is 32 x the stem width, and
# the input is downsampled 32 times (stem 4x, layers 2-4 2x each).
RESNET_FEATURE_MULT = 32
RESNET_DOWNSAMPLE = 32
RESNET_STAGES = 4


@dataclass
class CLIPConfig:
    """An OpenAI CLIP architecture. As in OpenAI's CLIP class, vision_layers
    is an int for a ViT image tower and a tuple of four stage depths for a
    ModifiedResNet, whose vision_patch_size is None."""
    embed_dim: int
    image_resolution: int
    vision_layers: object  # int (ViT) or tuple of 4 ints (ModifiedResNet)
    vision_width: int
    vision_patch_size: object  # int (ViT) or None (ModifiedResNet)
    context_length: int
    vocab_size: int
    transformer_width: int
    transformer_layers: int

    def __post_init__(self):
        if isinstance(self.vision_layers, list):
            self.vision_layers = tuple(self.vision_layers)

    @property
    def is_resnet(self):
        return isinstance(self.vision_layers, tuple)

    @property
    def vision_heads(self):
        if self.is_resnet:
            return self.vision_width * RESNET_FEATURE_MULT // HEAD_WIDTH
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
            if name == "vision_layers" and self.is_resnet:
                if len(value) != RESNET_STAGES or not all(isinstance(v, int) and v > 0 for v in value):
                    raise ValueError(f"CLIP config: ModifiedResNet vision_layers must be {RESNET_STAGES} "
                                     f"positive stage depths, got {value!r}")
                continue
            if name == "vision_patch_size" and self.is_resnet:
                if value is not None:
                    raise ValueError(f"CLIP config: a ModifiedResNet has no patches, got vision_patch_size={value!r}")
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"CLIP config: {name} must be a positive integer, got {value!r}")
        if self.transformer_width % HEAD_WIDTH:
            raise ValueError(
                f"CLIP config: transformer_width={self.transformer_width} is not a multiple of {HEAD_WIDTH} "
                f"(heads are derived as width // {HEAD_WIDTH}, as in OpenAI's build_model)")
        if self.is_resnet:
            # The stem halves the width; heads = width*32 // 64 must divide
            # the attention pool's width*32 into heads of 64.
            if self.vision_width % 2:
                raise ValueError(f"CLIP config: ModifiedResNet vision_width={self.vision_width} must be even "
                                 f"(the stem's first convolutions have width // 2 channels)")
            if self.image_resolution % RESNET_DOWNSAMPLE:
                raise ValueError(
                    f"CLIP config: image_resolution={self.image_resolution} is not a multiple of "
                    f"{RESNET_DOWNSAMPLE} (a ModifiedResNet downsamples {RESNET_DOWNSAMPLE} times)")
        else:
            if self.vision_width % HEAD_WIDTH:
                raise ValueError(
                    f"CLIP config: vision_width={self.vision_width} is not a multiple of {HEAD_WIDTH} "
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
        if self.is_resnet:
            # open_clip writes a ResNet's stage depths as a list under
            # "layers"; clipd's bundle reader takes that list or the block
            # count. This writes the count there, and the depths under
            # their own key for readers that want a number.
            vision = {
                "image_size": self.image_resolution,
                "layers": sum(self.vision_layers),
                "stage_layers": list(self.vision_layers),
                "width": self.vision_width,
                "heads": self.vision_heads,
            }
        else:
            vision = {
                "image_size": self.image_resolution,
                "layers": self.vision_layers,
                "width": self.vision_width,
                "patch_size": self.vision_patch_size,
                "heads": self.vision_heads,
            }
        return {
            "embed_dim": self.embed_dim,
            "vision_cfg": vision,
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


def _avg_pool(size):
    """OpenAI's nn.AvgPool2d(size): unpadded, so count_include_pad changes
    nothing but the export, which it keeps free of an all-zero Pad node."""
    return nn.AvgPool2d(size, count_include_pad=False)


class Bottleneck(nn.Module):
    """OpenAI's ResNet bottleneck: every convolution has stride 1, and a
    strided block average-pools after its 3x3 convolution (and before the
    1x1 convolution of its shortcut) instead."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.avgpool = _avg_pool(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu3 = nn.ReLU(inplace=True)
        self.downsample = None
        if stride > 1 or inplanes != planes * self.expansion:
            # The key "-1" holds no weights, so OpenAI's state_dict has only
            # downsample.0 (conv) and downsample.1 (BatchNorm).
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", _avg_pool(stride) if stride > 1 else nn.Identity()),
                ("0", nn.Conv2d(inplanes, planes * self.expansion, 1, stride=1, bias=False)),
                ("1", nn.BatchNorm2d(planes * self.expansion)),
            ]))

    def forward(self, x):
        identity = x
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.avgpool(out)
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu3(out + identity)


class AttentionPool2d(nn.Module):
    """CLIP's attention pooling: the mean of the feature map, prepended to
    it as a query token, attends over all positions once. Computed as
    F.multi_head_attention_forward does (q scaled by 1/sqrt(head_dim)
    before the product), for the one query only."""

    def __init__(self, spacial_dim, embed_dim, num_heads, output_dim=None):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(spacial_dim ** 2 + 1, embed_dim) / embed_dim ** 0.5)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim or embed_dim)
        self.num_heads = num_heads
        # Python ints, so the export has constants where x.shape would trace.
        self.embed_dim = embed_dim
        self.head_dim = embed_dim // num_heads

    def forward(self, x):
        batch, channels, heads, head_dim = x.shape[0], self.embed_dim, self.num_heads, self.head_dim
        x = x.flatten(2).transpose(1, 2)  # [N, HW, C]
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)  # [N, HW+1, C]
        x = x + _as(self.positional_embedding, x.dtype)
        tokens = x.shape[1]
        q = self.q_proj(x[:, :1])  # [N, 1, C]
        k = self.k_proj(x)
        v = self.v_proj(x)
        q = q.reshape(batch, 1, heads, head_dim).transpose(1, 2) * (1.0 / math.sqrt(head_dim))
        k = k.reshape(batch, tokens, heads, head_dim).transpose(1, 2)
        v = v.reshape(batch, tokens, heads, head_dim).transpose(1, 2)
        weights = torch.softmax(torch.matmul(q, k.transpose(-2, -1)), dim=-1)  # [N, heads, 1, HW+1]
        out = torch.matmul(weights, v).transpose(1, 2).reshape(batch, channels)
        return self.c_proj(out)


class ModifiedResNet(nn.Module):
    """OpenAI's ResNet image tower: a 3-convolution stem with an average
    pool, four bottleneck stages (average-pool downsampling), and attention
    pooling in place of the global average pool."""

    def __init__(self, layers, output_dim, heads, input_resolution=224, width=64):
        super().__init__()
        self.output_dim = output_dim
        self.input_resolution = input_resolution
        self.conv1 = nn.Conv2d(3, width // 2, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width // 2, width // 2, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(width // 2, width, kernel_size=3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.relu3 = nn.ReLU(inplace=True)
        self.avgpool = _avg_pool(2)
        self._inplanes = width
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2)
        embed_dim = width * RESNET_FEATURE_MULT
        self.attnpool = AttentionPool2d(input_resolution // RESNET_DOWNSAMPLE, embed_dim, heads, output_dim)

    def _make_layer(self, planes, blocks, stride=1):
        layers = [Bottleneck(self._inplanes, planes, stride)]
        self._inplanes = planes * Bottleneck.expansion
        for _ in range(1, blocks):
            layers.append(Bottleneck(self._inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.relu3(self.bn3(self.conv3(x)))
        x = self.avgpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        return self.attnpool(x)


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
        if cfg.is_resnet:
            self.visual = ModifiedResNet(
                layers=cfg.vision_layers,
                output_dim=cfg.embed_dim,
                heads=cfg.vision_heads,
                input_resolution=cfg.image_resolution,
                width=cfg.vision_width,
            )
        else:
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
        if isinstance(self.visual, ModifiedResNet):
            pool = self.visual.attnpool
            std = pool.c_proj.in_features ** -0.5
            for proj in (pool.q_proj, pool.k_proj, pool.v_proj, pool.c_proj):
                nn.init.normal_(proj.weight, std=std)
            # Each block starts as the identity: its last BatchNorm scales by 0.
            for stage in (self.visual.layer1, self.visual.layer2, self.visual.layer3, self.visual.layer4):
                for name, param in stage.named_parameters():
                    if name.endswith("bn3.weight"):
                        nn.init.zeros_(param)
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
    does, for either image tower. Raises CheckpointError naming the missing
    or inconsistent key."""

    def need(key):
        if key not in state_dict:
            raise CheckpointError(f"not a CLIP checkpoint: key {key!r} is missing")
        return state_dict[key]

    if "visual.proj" in state_dict or "visual.transformer.resblocks.0.attn.in_proj_weight" in state_dict:
        vision = _vit_config(state_dict, need)
    elif any(k.startswith(("visual.layer1.", "visual.attnpool.")) for k in state_dict):
        vision = _resnet_config(state_dict, need)
    else:
        found = sorted({".".join(k.split(".")[:2]) for k in state_dict if k.startswith("visual.")})
        raise CheckpointError(
            "not a CLIP checkpoint: its image tower is neither a ViT (visual.proj, visual.transformer.*) "
            "nor a ModifiedResNet (visual.layer1-4.*, visual.attnpool.*); found "
            + (", ".join(found[:8]) + (", ..." if len(found) > 8 else "") if found else "no visual.* keys"))

    embed_dim = need("text_projection").shape[1]
    if vision["embed_dim"] is not None and vision["embed_dim"] != embed_dim:
        raise CheckpointError(
            f"the image tower's output ({vision['embed_dim_key']}: {vision['embed_dim']}) does not match "
            f"text_projection's {embed_dim} columns")
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
            image_resolution=int(vision["image_resolution"]),
            vision_layers=vision["layers"],
            vision_width=int(vision["width"]),
            vision_patch_size=vision["patch_size"],
            context_length=int(context_length),
            vocab_size=int(vocab_size),
            transformer_width=int(transformer_width),
            transformer_layers=transformer_layers,
        ).validate()
    except ValueError as err:
        raise CheckpointError(str(err)) from None


def _vit_config(state_dict, need):
    conv = need("visual.conv1.weight")
    proj = need("visual.proj")
    if conv.dim() != 4:
        raise CheckpointError(f"visual.conv1.weight has shape {tuple(conv.shape)}, want 4 dimensions")
    vision_width = conv.shape[0]
    vision_patch_size = conv.shape[-1]
    vision_layers = len({k.split(".")[3] for k in state_dict
                         if k.startswith("visual.transformer.resblocks.") and k.endswith(".attn.in_proj_weight")})
    if vision_layers == 0:
        raise CheckpointError("not a CLIP ViT checkpoint: no visual.transformer.resblocks.N keys")
    grid = round((need("visual.positional_embedding").shape[0] - 1) ** 0.5)
    return {"layers": vision_layers, "width": int(vision_width), "patch_size": int(vision_patch_size),
            "image_resolution": int(vision_patch_size * grid),
            "embed_dim": int(proj.shape[1]) if proj.dim() == 2 else None, "embed_dim_key": "visual.proj"}


def _resnet_config(state_dict, need):
    """ModifiedResNet dimensions: stage depths from the block indices under
    visual.layer1-4, width from the stem's last convolution, the input size
    from the attention pool's positional embedding (grid² + 1 rows, grid =
    size / 32), the embedding from the pool's output projection."""
    depths = []
    for stage in range(1, RESNET_STAGES + 1):
        prefix = f"visual.layer{stage}."
        blocks = {k[len(prefix):].split(".")[0] for k in state_dict if k.startswith(prefix)}
        indices = sorted(int(b) for b in blocks if b.isdigit())
        if not indices:
            raise CheckpointError(f"not a CLIP ModifiedResNet checkpoint: no {prefix}N keys "
                                  f"(a ModifiedResNet has {RESNET_STAGES} stages, layer1-layer{RESNET_STAGES})")
        if indices != list(range(len(indices))) or len(indices) != len(blocks):
            raise CheckpointError(f"ModifiedResNet stage {prefix[:-1]}: blocks {sorted(blocks)} are not numbered 0..N-1")
        depths.append(len(indices))
    extra = sorted({k.split(".")[1] for k in state_dict
                    if k.startswith("visual.layer") and k.split(".")[1][len("layer"):].isdigit()
                    and int(k.split(".")[1][len("layer"):]) > RESNET_STAGES})
    if extra:
        raise CheckpointError(f"ModifiedResNet with stages {', '.join(extra)} beyond layer{RESNET_STAGES}: "
                              f"not OpenAI's architecture")
    stem = need("visual.conv3.weight")
    if stem.dim() != 4:
        raise CheckpointError(f"visual.conv3.weight has shape {tuple(stem.shape)}, want 4 dimensions")
    width = int(stem.shape[0])
    block = need("visual.layer1.0.conv1.weight")
    if block.dim() != 4 or block.shape[0] != width:
        raise CheckpointError(f"visual.layer1.0.conv1.weight has shape {tuple(block.shape)}, "
                              f"want {width} output channels like the stem's visual.conv3.weight")
    pos = need("visual.attnpool.positional_embedding")
    if pos.dim() != 2:
        raise CheckpointError(f"visual.attnpool.positional_embedding has shape {tuple(pos.shape)}, want 2 dimensions")
    rows = int(pos.shape[0])
    grid = round((rows - 1) ** 0.5)
    if grid < 1 or grid * grid + 1 != rows:
        raise CheckpointError(f"visual.attnpool.positional_embedding has {rows} rows, "
                              f"want grid² + 1 (the mean token and a square feature map)")
    if pos.shape[1] != width * RESNET_FEATURE_MULT:
        raise CheckpointError(f"visual.attnpool.positional_embedding is {int(pos.shape[1])} wide, "
                              f"want {width * RESNET_FEATURE_MULT} (stem width {width} x {RESNET_FEATURE_MULT})")
    c_proj = need("visual.attnpool.c_proj.weight")
    if c_proj.dim() != 2:
        raise CheckpointError(f"visual.attnpool.c_proj.weight has shape {tuple(c_proj.shape)}, want 2 dimensions")
    return {"layers": tuple(depths), "width": width, "patch_size": None,
            "image_resolution": grid * RESNET_DOWNSAMPLE,
            "embed_dim": int(c_proj.shape[0]), "embed_dim_key": "visual.attnpool.c_proj.weight"}


def build_model(state_dict):
    """A float32 CLIP in eval mode holding the checkpoint's weights."""
    state_dict = {k: v for k, v in state_dict.items() if k not in NON_WEIGHT_KEYS}
    cfg = config_from_state_dict(state_dict)
    model = CLIP(cfg)
    try:
        model.load_state_dict({k: v.float() for k, v in state_dict.items()}, strict=True)
    except RuntimeError as err:
        tower = "ModifiedResNet" if cfg.is_resnet else "ViT"
        raise CheckpointError(f"checkpoint does not match the CLIP {tower} architecture {describe_vision(cfg)}: "
                              f"{err}") from None
    return model.float().eval()


def describe_vision(cfg):
    if cfg.is_resnet:
        return (f"(ModifiedResNet {cfg.image_resolution}px, stages {'/'.join(map(str, cfg.vision_layers))}, "
                f"width {cfg.vision_width}, {cfg.vision_heads} pooling heads)")
    return (f"(ViT {cfg.image_resolution}px, patch {cfg.vision_patch_size}, width {cfg.vision_width}, "
            f"{cfg.vision_layers} layers)")


# Sizes for --random-init: the released OpenAI models' shapes. "tiny" and
# "tiny-rn" are the reference checkpoints' sizes.
ARCHITECTURES = {
    "tiny": CLIPConfig(64, 224, 2, 128, 32, 77, 49408, 128, 2),
    "tiny-rn": CLIPConfig(64, 224, (1, 1, 1, 1), 16, None, 77, 49408, 128, 2),
    "ViT-B/32": CLIPConfig(512, 224, 12, 768, 32, 77, 49408, 512, 12),
    "ViT-B/16": CLIPConfig(512, 224, 12, 768, 16, 77, 49408, 512, 12),
    "ViT-L/14": CLIPConfig(768, 224, 24, 1024, 14, 77, 49408, 768, 12),
    "ViT-L/14@336px": CLIPConfig(768, 336, 24, 1024, 14, 77, 49408, 768, 12),
    "RN50": CLIPConfig(1024, 224, (3, 4, 6, 3), 64, None, 77, 49408, 512, 12),
    "RN101": CLIPConfig(512, 224, (3, 4, 23, 3), 64, None, 77, 49408, 512, 12),
    "RN50x4": CLIPConfig(640, 288, (4, 6, 10, 6), 80, None, 77, 49408, 640, 12),
    "RN50x16": CLIPConfig(768, 384, (6, 8, 18, 8), 96, None, 77, 49408, 768, 12),
    "RN50x64": CLIPConfig(1024, 448, (3, 15, 36, 10), 128, None, 77, 49408, 1024, 12),
}


def random_model(arch, seed=0):
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    torch.manual_seed(seed)
    return CLIP(ARCHITECTURES[arch]).float().eval()
