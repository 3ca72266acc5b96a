"""A varlen-aware attention for packed training on CPU: "sdpa_varlen".

On a GPU, flash attention and flex attention skip the blocks between packed texts. On a CPU
neither trains (flex attention has no CPU backward), and plain sdpa gets a dense block-diagonal
mask built from the position_ids: every packed row then costs (row length)^2 of attention plus
the mask, more than the padding that packing saves. "sdpa_varlen" runs causal sdpa once per text
instead, cutting each row where its position_ids restart (or at the `cu_seq_lens_q` boundaries
that TRL's padding-free collator passes down). Rows with a padding mask, and decoding with a
cache, go to transformers' sdpa unchanged.

`register()` adds it to transformers' attention and mask registries; `training.sft.main` calls
it. The name is not written to a saved model's config.json.
"""

from __future__ import annotations

import itertools
from typing import Any

NAME = "sdpa_varlen"


def _text_bounds(kwargs: dict[str, Any], batch: int, length: int) -> list[list[tuple[int, int]]]:
    """(start, end) of each text in each row of a batch without padding."""
    bounds = kwargs.get("cu_seq_lens_q")
    if bounds is not None and batch == 1:
        return [[(s, e) for s, e in itertools.pairwise(bounds.tolist()) if e > s]]
    positions = kwargs.get("position_ids")
    if positions is None:
        return [[(0, length)] for _ in range(batch)]
    positions = positions.expand(batch, -1)
    restarts = positions[:, 1:] != positions[:, :-1] + 1
    rows = []
    for row in restarts:
        cuts = [0, *(row.nonzero().flatten() + 1).tolist(), length]
        rows.append(list(itertools.pairwise(cuts)))
    return rows


def sdpa_varlen_attention_forward(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    import torch
    from torch.nn.functional import scaled_dot_product_attention
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    batch, _, length, _ = query.shape
    if attention_mask is not None or key.shape[2] != length:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    gqa = key.shape[1] != query.shape[1]
    rows = []
    for b, texts in enumerate(_text_bounds(kwargs, batch, length)):
        rows.append(
            torch.cat(
                [
                    scaled_dot_product_attention(
                        query[b : b + 1, :, start:end],
                        key[b : b + 1, :, start:end],
                        value[b : b + 1, :, start:end],
                        dropout_p=dropout if module.training else 0.0,
                        is_causal=True,
                        scale=scaling,
                        enable_gqa=gqa,
                    )
                    for start, end in texts
                ],
                dim=2,
            )
        )
    # (batch, heads, tokens, head_dim) -> (batch, tokens, heads, head_dim), as sdpa returns it
    return torch.cat(rows).transpose(1, 2).contiguous(), None


def _mask(**kwargs: Any) -> Any:
    """No mask for full rows without padding (the attention cuts them into texts itself);
    transformers' sdpa mask otherwise."""
    from transformers.masking_utils import sdpa_mask

    no_padding = kwargs.get("attention_mask") is None and not kwargs.get("q_offset")
    if no_padding and kwargs["q_length"] == kwargs["kv_length"]:
        return None
    return sdpa_mask(**kwargs)


def register() -> None:
    """Make `attn_implementation="sdpa_varlen"` loadable (idempotent)."""
    from transformers import AttentionInterface, AttentionMaskInterface

    AttentionInterface.register(NAME, sdpa_varlen_attention_forward)
    AttentionMaskInterface.register(NAME, _mask)
