"""A tiny tokenizer and Qwen2-shaped model built offline, for tests, the demo and benchmarks.

Nothing is downloaded: the tokenizer is a byte-level BPE trained in memory on a given corpus,
the model is randomly initialised from a seed. Both save with `save_pretrained` and load in
transformers and vLLM.

    tok = build_tokenizer(texts)   # ChatML special tokens, a training-ready chat template
    model = build_model(tok)       # ~0.5M parameters with the defaults
    tok.save_pretrained(d); model.save_pretrained(d)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast, Qwen2ForCausalLM

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
PAD = "<|endoftext|>"
SPECIAL_TOKENS = [PAD, IM_START, IM_END]

# ChatML, as Qwen2 writes it. The assistant's content and its end-of-turn token sit inside
# {% generation %} so TRL's `assistant_only_loss` and `return_assistant_tokens_mask` work with it.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|im_start|>assistant\\n' }}"
    "{%- generation -%}{{ message['content'] + '<|im_end|>' }}{%- endgeneration -%}"
    "{{ '\\n' }}"
    "{%- else -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


def build_tokenizer(
    corpus: Iterable[str], vocab_size: int = 512, *, whole_numbers: int = 0
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on `corpus` and wrap it for transformers.

    Every byte is in the vocabulary (256 entries), so any text round-trips; the rest are the
    three special tokens (`<|endoftext|>` = pad, `<|im_start|>`, `<|im_end|>` = eos) and merges
    learnt from the corpus (fewer than `vocab_size` if the corpus is small). The same corpus
    gives the same tokenizer. Offsets are not trimmed, so each token's `offset_mapping` covers
    exactly the characters it encodes (loss masking relies on it).

    `whole_numbers` n > 0: every number below n is one token (an added token, matched before
    any other rule), the same token wherever it appears. Not a pre-tokenizer rule: transformers
    loads a Qwen2 model's tokenizer as `Qwen2Tokenizer`, which replaces the pre-tokenizer with
    Qwen's (one token per digit) but keeps added tokens.
    """
    from tokenizers import (
        AddedToken,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if vocab_size < len(byte_level.alphabet()) + len(SPECIAL_TOKENS):
        minimum = 256 + len(SPECIAL_TOKENS)
        raise ValueError(f"vocab_size must be at least {minimum}, got {vocab_size}")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = byte_level
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(corpus), trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=IM_END,
        pad_token=PAD,
        additional_special_tokens=[IM_START],
        chat_template=CHAT_TEMPLATE,
        model_max_length=32768,
        padding_side="right",
    )
    wrapped.add_tokens([AddedToken(str(n), normalized=False) for n in range(whole_numbers)])
    return wrapped


def build_model(
    tokenizer: PreTrainedTokenizerFast,
    hidden_size: int = 128,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int | None = None,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 32768,
    seed: int = 0,
) -> Qwen2ForCausalLM:
    """A randomly initialised Qwen2ForCausalLM sized for `tokenizer`, reproducible from `seed`.

    `hidden_size / heads` is the head dimension; vLLM's CPU attention needs at least 32 (the
    default is 128 / 4 = 32). Embeddings are tied to the LM head to keep the model small. The
    global torch RNG is left as it was.
    """
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    if hidden_size % heads or hidden_size // heads < 32:
        raise ValueError(f"hidden_size / heads must be a whole number >= 32: {hidden_size}/{heads}")
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 4 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads or heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model
