r"""A small decoder-only transformer with a KV cache, in one readable file (nanoGPT spirit).

Pre-norm blocks ``x + attn(norm(x))``, ``x + mlp(norm(x))`` with RMSNorm, causal multi-head
attention through ``torch.nn.functional.scaled_dot_product_attention``, learned positions.

Shapes: B batch, T tokens in this call, C = d_model, H heads, D = C / H, V vocabulary.

Derived in: chapter 9.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ModelConfig:
    """Hyperparameters of :class:`MazeTransformer`."""

    vocab_size: int
    context_length: int
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    mlp_ratio: int = 4

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "d_model", "n_layers", "n_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive int, got {value!r}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"ModelConfig: d_model {self.d_model} must be divisible by n_heads {self.n_heads}"
            )


class KVCache:
    """Keys and values of every layer for the tokens seen so far.

    ``keys[layer]`` and ``values[layer]``: ``(B, H, max_len, D)``, filled up to ``length``.
    Allocated on the first write, in the dtype of the keys (bf16 under autocast).
    """

    def __init__(self, n_layers: int, max_len: int) -> None:
        self.max_len = max_len
        self.length = 0
        self.keys: list[torch.Tensor | None] = [None] * n_layers
        self.values: list[torch.Tensor | None] = [None] * n_layers

    def write(
        self, layer: int, key: torch.Tensor, value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``key``/``value`` ``(B, H, T, D)`` at ``length``; return all so far."""
        batch, heads, steps, dim = key.shape
        if self.keys[layer] is None:
            shape = (batch, heads, self.max_len, dim)
            self.keys[layer] = key.new_zeros(shape)
            self.values[layer] = value.new_zeros(shape)
        end = self.length + steps
        if end > self.max_len:
            raise ValueError(f"KVCache: {end} tokens exceed max_len {self.max_len}")
        self.keys[layer][:, :, self.length : end] = key
        self.values[layer][:, :, self.length : end] = value
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def repeat_interleave(self, repeats: int) -> KVCache:
        """Each batch row repeated ``repeats`` times (prefill P prompts, sample P*N)."""
        out = KVCache(len(self.keys), self.max_len)
        out.length = self.length
        out.keys = [k.repeat_interleave(repeats, dim=0) for k in self.keys]
        out.values = [v.repeat_interleave(repeats, dim=0) for v in self.values]
        return out


class RMSNorm(nn.Module):
    r""":math:`y = x / \sqrt{\mathrm{mean}(x^2) + \epsilon} \cdot w` over the last axis."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_float = x.float()
        normed = x_float * torch.rsqrt(x_float.pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed * self.weight).to(x.dtype)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=False)

    def forward(self, x: torch.Tensor, cache: KVCache | None, layer: int) -> torch.Tensor:
        batch, steps, width = x.shape  # (B, T, C)
        q, k, v = self.qkv(x).split(width, dim=2)  # 3 x (B, T, C)
        q, k, v = (t.view(batch, steps, self.n_heads, -1).transpose(1, 2) for t in (q, k, v))
        # q, k, v: (B, H, T, D)
        if cache is None or cache.length == 0:
            if cache is not None:
                cache.write(layer, k, v)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, D)
        else:
            past = cache.length
            k_all, v_all = cache.write(layer, k, v)  # (B, H, past + T, D)
            # query t (absolute position past + t) sees keys 0 .. past + t
            allowed = torch.ones(steps, past + steps, dtype=torch.bool, device=x.device)
            allowed = allowed.tril(diagonal=past)  # (T, past + T)
            y = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=allowed)
        y = y.transpose(1, 2).reshape(batch, steps, width)  # (B, T, C)
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        hidden = config.mlp_ratio * config.d_model
        self.up = nn.Linear(config.d_model, hidden, bias=False)
        self.down = nn.Linear(hidden, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))  # (B, T, C)


class Block(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.norm_attn = RMSNorm(config.d_model)
        self.attn = CausalSelfAttention(config)
        self.norm_mlp = RMSNorm(config.d_model)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: KVCache | None, layer: int) -> torch.Tensor:
        x = x + self.attn(self.norm_attn(x), cache, layer)
        return x + self.mlp(self.norm_mlp(x))


class MazeTransformer(nn.Module):
    """Decoder-only transformer: token + position embeddings, blocks, RMSNorm, linear head."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.position_embedding = nn.Embedding(config.context_length, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def new_cache(self) -> KVCache:
        return KVCache(self.config.n_layers, self.config.context_length)

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Logits ``(B, T, V)`` for ``tokens`` ``(B, T)``; with ``cache``, continue from it."""
        if tokens.ndim != 2:
            raise ValueError(f"MazeTransformer: tokens must be (B, T), got {tuple(tokens.shape)}")
        past = 0 if cache is None else cache.length
        steps = tokens.shape[1]
        if past + steps > self.config.context_length:
            raise ValueError(
                f"MazeTransformer: {past + steps} tokens exceed the context length "
                f"{self.config.context_length}"
            )
        positions = torch.arange(past, past + steps, device=tokens.device)  # (T,)
        x = self.token_embedding(tokens) + self.position_embedding(positions)  # (B, T, C)
        for layer, block in enumerate(self.blocks):
            x = block(x, cache, layer)
        if cache is not None:
            cache.length += steps
        return self.head(self.norm(x))  # (B, T, V)
