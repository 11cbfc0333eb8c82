"""Where a model's prunable transformer blocks are: one :class:`BlockView` per block of every image backbone.

Both backbone sources are covered: timm ``VisionTransformer`` blocks (fused ``attn.qkv``, ``attn.proj``,
``mlp.fc1`` / ``mlp.fc2``) and transformers ``ViTModel`` / ``DeiTModel`` layers (``attention.q_proj`` /
``k_proj`` / ``v_proj`` / ``o_proj``, ``mlp.fc1`` / ``mlp.fc2``). A view names the input projections (whose
output rows are laid out ``[groups, heads, head_dim]``), the output projection (whose input columns are
``[heads, head_dim]``) and the MLP, and can set the head count after heads were removed. Only image
backbones are pruned (GraFT's study pruned the 12 backbone layers, not the fusion layers or heads).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from reidbench.errors import UserError
from reidbench.nn.backbones import HFImageBackbone, ImageBackbone


@dataclass
class BlockView:
    """One transformer block: its attention projections, the attribute holding its head count, its MLP."""

    name: str
    attention: nn.Module
    inputs: list[tuple[nn.Linear, int]]  # (projection, groups): rows [groups, heads, head_dim]
    output: nn.Linear  # columns [heads, head_dim]
    heads_attr: str
    head_dim: int
    fc1: nn.Linear  # rows: hidden channels
    fc2: nn.Linear  # columns: hidden channels

    @property
    def num_heads(self) -> int:
        return int(getattr(self.attention, self.heads_attr))

    @property
    def hidden(self) -> int:
        return self.fc1.out_features

    def set_num_heads(self, heads: int) -> None:
        """Record a new head count on the attention module (timm also keeps ``attn_dim``)."""
        setattr(self.attention, self.heads_attr, heads)
        if hasattr(self.attention, "attn_dim"):
            self.attention.attn_dim = heads * self.head_dim

    def weights(self) -> list[tuple[str, nn.Linear]]:
        """The block's attention and MLP matrices (what unstructured pruning ranks)."""
        named = [(f"{self.name}.in{i}", lin) for i, (lin, _) in enumerate(self.inputs)]
        return [
            *named,
            (f"{self.name}.out", self.output),
            (f"{self.name}.fc1", self.fc1),
            (f"{self.name}.fc2", self.fc2),
        ]


def _timm_block(name: str, block: nn.Module) -> BlockView:
    attn = block.attn
    return BlockView(
        name, attn, [(attn.qkv, 3)], attn.proj, "num_heads", attn.head_dim, block.mlp.fc1, block.mlp.fc2
    )


def _hf_layer(name: str, layer: nn.Module) -> BlockView:
    attn = layer.attention
    inputs = [(attn.q_proj, 1), (attn.k_proj, 1), (attn.v_proj, 1)]
    return BlockView(
        name, attn, inputs, attn.o_proj, "num_attention_heads", attn.head_dim, layer.mlp.fc1, layer.mlp.fc2
    )


def backbone_blocks(model: nn.Module) -> list[BlockView]:
    """Every block of every image backbone inside ``model``, in module order (shared backbones once)."""
    views: list[BlockView] = []
    for name, module in model.named_modules():
        if isinstance(module, ImageBackbone):
            views += [_timm_block(f"{name}.blocks.{i}", b) for i, b in enumerate(module.model.blocks)]
        elif isinstance(module, HFImageBackbone):
            layers = module.model.encoder.layer if hasattr(module.model, "encoder") else module.model.layers
            views += [_hf_layer(f"{name}.layers.{i}", b) for i, b in enumerate(layers)]
    if not views:
        raise UserError(
            f"{type(model).__name__} has no ViT image backbone to prune (pruning covers the attention and "
            "MLP matrices of timm or transformers ViT backbones)"
        )
    return views
