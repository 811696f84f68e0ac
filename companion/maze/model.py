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
    r"""Keys and values of every layer for the tokens seen so far.

    A plain cache holds, per layer, ``keys[layer]`` and ``values[layer]`` of shape
    ``(B, H, max_len, D)``, filled up to ``length``. After :meth:`share_prefix` the first
    ``prefix_len`` positions are stored once per prompt, ``(P, H, prefix_len, D)``, and shared by
    the ``group = N`` consecutive rows that continue that prompt; only the positions after the
    prefix are stored per row, ``(B, H, max_len - prefix_len, D)`` with ``B = P * N``.
    Allocated on the first write, in the dtype of the keys (bf16 under autocast).
    """

    def __init__(self, n_layers: int, max_len: int) -> None:
        self.max_len = max_len
        self.length = 0
        self.keys: list[torch.Tensor | None] = [None] * n_layers
        self.values: list[torch.Tensor | None] = [None] * n_layers
        self.prefix_keys: list[torch.Tensor] | None = None
        self.prefix_values: list[torch.Tensor] | None = None
        self.prefix_len = 0
        self.group = 1

    def write(
        self, layer: int, key: torch.Tensor, value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``key``/``value`` ``(B, H, T, D)`` at ``length``; return the stored keys and
        values of this row so far (after the shared prefix, if there is one)."""
        batch, heads, steps, dim = key.shape
        if self.keys[layer] is None:
            shape = (batch, heads, self.max_len - self.prefix_len, dim)
            self.keys[layer] = key.new_zeros(shape)
            self.values[layer] = value.new_zeros(shape)
        begin = self.length - self.prefix_len
        end = begin + steps
        if self.length + steps > self.max_len:
            raise ValueError(f"KVCache: {self.length + steps} tokens exceed max_len {self.max_len}")
        self.keys[layer][:, :, begin:end] = key
        self.values[layer][:, :, begin:end] = value
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def share_prefix(self, repeats: int) -> KVCache:
        """A cache for ``P * repeats`` rows that continue this plain cache's P rows: row
        ``P_index * repeats + j`` sees prompt ``P_index``'s keys, which are kept once, not
        copied ``repeats`` times (prefill P prompts once, then sample N answers for each)."""
        if self.prefix_keys is not None:
            raise ValueError("KVCache.share_prefix: this cache already shares a prefix")
        if any(k is None for k in self.keys):
            raise ValueError("KVCache.share_prefix: fill the cache with the prompts first")
        out = KVCache(len(self.keys), self.max_len)
        out.prefix_keys = [k[:, :, : self.length] for k in self.keys]
        out.prefix_values = [v[:, :, : self.length] for v in self.values]
        out.prefix_len = out.length = self.length
        out.group = repeats
        return out

    def repeat_interleave(self, repeats: int) -> KVCache:
        """Each batch row of a plain cache copied ``repeats`` times (the simple, memory-hungry
        alternative to :meth:`share_prefix`)."""
        if self.prefix_keys is not None:
            raise ValueError("KVCache.repeat_interleave: only a plain cache can be repeated")
        out = KVCache(len(self.keys), self.max_len)
        out.length = self.length
        out.keys = [k.repeat_interleave(repeats, dim=0) for k in self.keys]
        out.values = [v.repeat_interleave(repeats, dim=0) for v in self.values]
        return out


def shared_prefix_attention(
    q: torch.Tensor,
    prefix_keys: torch.Tensor,
    prefix_values: torch.Tensor,
    own_keys: torch.Tensor,
    own_values: torch.Tensor,
) -> torch.Tensor:
    r"""Causal attention of ``B = P * G`` rows whose first keys are shared by groups of G rows.

    .. math:: y = \mathrm{softmax}\Bigl(\frac{q\,[K_{\mathrm{prefix}};\,K_{\mathrm{own}}]^\top}
              {\sqrt{D}} + M\Bigr)\,[V_{\mathrm{prefix}};\,V_{\mathrm{own}}]

    the same numbers as attention over the concatenated keys of each row, but the prefix
    scores are one matrix product per prompt, so the prefix is read P times instead of B.
    The query at own position ``S - T + t`` sees every prefix key and own keys ``0 .. S-T+t``.

    =================  ==================  ==========================================
    argument           shape               meaning
    =================  ==================  ==========================================
    ``q``              ``(B, H, T, D)``    queries of the last T positions of a row
    ``prefix_keys``    ``(P, H, T0, D)``   keys of the shared prefix (also values)
    ``own_keys``       ``(B, H, S, D)``    keys after the prefix, S >= T (also values)
    returns            ``(B, H, T, D)``
    =================  ==================  ==========================================
    """
    batch, heads, steps, dim = q.shape
    prompts, prefix_len = prefix_keys.shape[0], prefix_keys.shape[2]
    group, own_len = batch // prompts, own_keys.shape[2]
    q = q * dim**-0.5
    # prefix: one (G*T, D) x (D, T0) product per prompt and head
    q_grouped = q.view(prompts, group, heads, steps, dim).transpose(1, 2)  # (P, H, G, T, D)
    q_grouped = q_grouped.reshape(prompts, heads, group * steps, dim)
    prefix_scores = q_grouped @ prefix_keys.transpose(-1, -2)  # (P, H, G*T, T0)
    prefix_scores = prefix_scores.view(prompts, heads, group, steps, prefix_len).transpose(1, 2)
    own_scores = q @ own_keys.transpose(-1, -2)  # (B, H, T, S)
    if steps > 1:  # own position S - T + t sees own keys 0 .. S - T + t
        allowed = torch.ones(steps, own_len, dtype=torch.bool, device=q.device)
        own_scores = own_scores.masked_fill(~allowed.tril(own_len - steps), float("-inf"))
    scores = torch.cat([prefix_scores.reshape(batch, heads, steps, prefix_len), own_scores], -1)
    weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)  # (B, H, T, T0 + S)
    prefix_weights, own_weights = weights.split([prefix_len, own_len], dim=-1)
    prefix_weights = prefix_weights.reshape(prompts, group, heads, steps, prefix_len)
    prefix_weights = prefix_weights.transpose(1, 2).reshape(prompts, heads, group * steps, -1)
    prefix_out = (prefix_weights @ prefix_values).view(prompts, heads, group, steps, dim)
    prefix_out = prefix_out.transpose(1, 2).reshape(batch, heads, steps, dim)
    if steps == 1:  # B*H products of (1, S) x (S, D): a broadcast sum is faster
        return prefix_out + (own_weights.transpose(-1, -2) * own_values).sum(-2, keepdim=True)
    return prefix_out + own_weights @ own_values


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
        elif cache.prefix_keys is not None:
            k_own, v_own = cache.write(layer, k, v)  # (B, H, own + T, D)
            y = shared_prefix_attention(
                q, cache.prefix_keys[layer], cache.prefix_values[layer], k_own, v_own
            )
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
