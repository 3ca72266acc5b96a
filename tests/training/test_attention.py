import pytest
import torch
from transformers import AutoModelForCausalLM

from training import attention
from training.tiny import build_model

LENGTHS = [7, 30, 1, 19]


@pytest.fixture(scope="module")
def models(tokenizer):
    """The same weights (grouped-query attention: 4 query heads, 2 key/value heads) twice."""
    attention.register()
    reference = build_model(tokenizer, kv_heads=2, seed=3)
    varlen = build_model(tokenizer, kv_heads=2, seed=3)
    reference.config._attn_implementation = "sdpa"
    varlen.config._attn_implementation = attention.NAME
    return reference, varlen


def _packed(lengths, seed=0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 300, (1, sum(lengths)), generator=generator)
    positions = torch.cat([torch.arange(n) for n in lengths])[None]
    bounds = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    return ids, positions, bounds


def _per_text(model, ids, lengths):
    outs, start = [], 0
    for n in lengths:
        outs.append(model(ids[:, start : start + n], use_cache=False).logits)
        start += n
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("with_bounds", [False, True])
def test_packed_row_equals_texts_alone(models, with_bounds):
    reference, varlen = models
    ids, positions, bounds = _packed(LENGTHS)
    extra = {"cu_seq_lens_q": bounds, "cu_seq_lens_k": bounds} if with_bounds else {}
    with torch.no_grad():
        alone = _per_text(reference, ids, LENGTHS)
        packed = varlen(ids, position_ids=positions, use_cache=False, **extra).logits
        masked = reference(ids, position_ids=positions, use_cache=False).logits
    torch.testing.assert_close(packed, alone, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(masked, alone, atol=1e-5, rtol=1e-4)  # sdpa's dense mask agrees


def test_gradients_match_the_dense_mask(models):
    reference, varlen = models
    ids, positions, _ = _packed(LENGTHS, seed=1)
    grads = []
    for model in (reference, varlen):
        model.zero_grad()
        model(ids, position_ids=positions, labels=ids, use_cache=False).loss.backward()
        grads.append(model.model.layers[0].self_attn.q_proj.weight.grad.clone())
    torch.testing.assert_close(grads[1], grads[0], atol=1e-6, rtol=1e-4)


def test_several_packed_rows_and_padded_batches(models):
    reference, varlen = models
    ids_a, pos_a, _ = _packed([10, 6], seed=2)
    ids_b, pos_b, _ = _packed([4, 12], seed=3)
    ids, positions = torch.cat([ids_a, ids_b]), torch.cat([pos_a, pos_b])
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    with torch.no_grad():
        torch.testing.assert_close(
            varlen(ids, position_ids=positions, use_cache=False).logits,
            reference(ids, position_ids=positions, use_cache=False).logits,
            atol=1e-5,
            rtol=1e-4,
        )
        padded = varlen(ids, attention_mask=mask, use_cache=False).logits
        expected = reference(ids, attention_mask=mask, use_cache=False).logits
    torch.testing.assert_close(padded[mask.bool()], expected[mask.bool()], atol=1e-5, rtol=1e-4)


def test_generation_with_a_cache_is_unchanged(models, tokenizer):
    reference, varlen = models
    prompt = torch.tensor([tokenizer("What is 2 + 3?")["input_ids"]])
    kwargs = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    assert torch.equal(varlen.generate(prompt, **kwargs), reference.generate(prompt, **kwargs))


def test_saved_config_does_not_name_it(models, tmp_path):
    _, varlen = models
    varlen.save_pretrained(tmp_path)
    assert attention.NAME not in (tmp_path / "config.json").read_text()
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation=attention.NAME)
    assert reloaded.config._attn_implementation == attention.NAME
