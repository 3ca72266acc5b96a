import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.training import synthetic
from training.tiny import IM_END, IM_START, PAD, build_model, build_tokenizer


def test_tokenizer_is_deterministic_and_round_trips(tokenizer):
    again = build_tokenizer(synthetic.corpus(synthetic.rows(60, seed=1, filler_words=(0, 20))))
    assert again.get_vocab() == tokenizer.get_vocab()
    assert len(tokenizer) <= 512
    text = "héllo 😀 ```python\nprint(1)\n```\n```output\n1\n```\n</think>"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text


def test_special_tokens_are_single_tokens(tokenizer):
    for token in (IM_START, IM_END, PAD):
        assert tokenizer(token, add_special_tokens=False)["input_ids"] == [
            tokenizer.convert_tokens_to_ids(token)
        ]
    assert tokenizer.eos_token == IM_END
    assert tokenizer.pad_token == PAD


def test_chat_template_matches_the_contract_prompt(tokenizer):
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "P"}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nP<|im_end|>\n<|im_start|>assistant\n"
    )


def test_chat_template_marks_assistant_content_for_trl(tokenizer):
    messages = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "P"},
        {"role": "assistant", "content": "the answer"},
    ]
    out = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    marked = [t for t, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    assert tokenizer.decode(marked) == "the answer" + IM_END


def test_model_is_seeded_and_leaves_the_global_rng_alone(tokenizer):
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_model(tokenizer, seed=0)
    after = torch.rand(1)
    assert torch.equal(before, after)
    b = build_model(tokenizer, seed=0)
    c = build_model(tokenizer, seed=1)
    for (_, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert not torch.equal(a.model.embed_tokens.weight, c.model.embed_tokens.weight)
    assert a.config.hidden_size // a.config.num_attention_heads >= 32
    assert a.config.vocab_size == len(tokenizer)


def test_head_dim_below_32_is_refused(tokenizer):
    with pytest.raises(ValueError, match="32"):
        build_model(tokenizer, hidden_size=64, heads=4)


def test_saved_model_and_tokenizer_reload(base_model_dir, tokenizer):
    tok = AutoTokenizer.from_pretrained(base_model_dir)
    model = AutoModelForCausalLM.from_pretrained(base_model_dir)
    assert tok.get_vocab() == tokenizer.get_vocab()
    assert tok.chat_template == tokenizer.chat_template
    ids = torch.tensor([tok("What is 1 + 2?")["input_ids"]])
    assert model(ids).logits.shape == (1, ids.shape[1], len(tok))
