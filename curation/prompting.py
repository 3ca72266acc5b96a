"""The conversation a policy sees: one system prompt for rollouts, datasets and training alike."""

SYSTEM_PROMPT = (
    "You are a helpful assistant. Think step by step inside <think> </think>. You may write Python "
    "in ```python blocks; the interpreter's result is shown in an ```output block. Put the final "
    "answer in \\boxed{}."
)


def messages(prompt: str, *, system: str = SYSTEM_PROMPT) -> list[dict[str, str]]:
    """The system and user turns that precede the completion."""
    return [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
