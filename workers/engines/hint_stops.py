"""Stop only where a hint goes: the conjunction draw made before a request, counted in the engine.

Hint-infer inserts a hint after a conjunction ("Wait", "Alternatively") with probability p, so
stopping generation at every conjunction wastes a stop and a resume on each one that gets none.
Instead the rollout draws, before each request, how many eligible conjunctions the model may write
past (``draw_skips``: geometric, one coin per conjunction, as before) and the engine ends the
request right after the next one: a vLLM logits processor (``processors.HintStopsProcessor``)
watches the tokens the request generates (``ConjunctionWatch``) and forces the end-of-sequence
token there.
The rollout replays the same watch over the returned tokens to tell that stop from the model's
own end of sequence. Because the geometric law has no memory, a request that ends elsewhere
(a code block, the end of thinking) simply draws again for the next: hint positions have the same
distribution as with a coin at every conjunction.

A conjunction is eligible where the stop-string loop would have drawn a coin: at the start of a
word, not running on into a longer word within the token that completes it ("Waiting"), outside
an open code block and before ``</think>``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from curation.trajectory import PROSE_KINDS, THINK_END, Segment, parse

# SamplingParams.extra_args keys (flat: the OpenAI server's vllm_xargs takes no nested values).
_CONJUNCTIONS, _SKIPS, _CONTEXT = "hint_conjunctions", "hint_skips", "hint_context"
# Prompt ids that prime a request's incremental decoding, as vLLM's detokenizer primes with the
# whole prompt (a token's leading space can depend on the one before).
_PRIME_IDS = 4
# Prose of the completion before a request that a marker split by the request can start in.
_PROSE_TAIL = 8


@dataclass(frozen=True)
class HintStops:
    """One request's conjunction draw."""

    conjunctions: tuple[str, ...]
    skips: int  # eligible conjunctions to write past; the request ends after the next one
    context: str  # the completion's last segment (the tail of prose): what the request continues

    def to_args(self) -> dict[str, Any]:
        return {
            _CONJUNCTIONS: list(self.conjunctions),
            _SKIPS: self.skips,
            _CONTEXT: self.context,
        }

    @classmethod
    def from_args(cls, args: dict[str, Any] | None) -> HintStops | None:
        if not args or _SKIPS not in args:
            return None
        return cls(tuple(args[_CONJUNCTIONS]), int(args[_SKIPS]), str(args[_CONTEXT]))


def draw_skips(probability: float, rng: random.Random) -> int:
    """Conjunctions before the one that gets a hint: geometric, one draw (inverse transform)."""
    if not 0.0 < probability <= 1.0:
        raise ValueError(f"probability must be in (0, 1], got {probability}")
    if probability == 1.0:
        return 0
    return int(math.log(1.0 - rng.random()) / math.log(1.0 - probability))


def context_for(last: Segment | None) -> str:
    """What a request's watch needs of the completion so far: its last segment when that is a
    block (the request may go on inside it), the tail of prose otherwise."""
    if last is None:
        return ""
    return last.text[-_PROSE_TAIL:] if last.kind in PROSE_KINDS else last.text


class ConjunctionWatch:
    """Follows one request's generated tokens; ``feed`` says where the hinted conjunction ends."""

    def __init__(self, tokenizer: Any, stops: HintStops, prompt_ids: Sequence[int]) -> None:
        from tokenizers.decoders import DecodeStream

        self._tokenizer = getattr(tokenizer, "_tokenizer", tokenizer)  # the Rust tokenizer
        self._stream = DecodeStream(ids=list(prompt_ids[-_PRIME_IDS:]), skip_special_tokens=True)
        self.stops = stops
        self.skips_left = stops.skips
        self.text = ""  # what the request generated, decoded as vLLM decodes it
        self._thinking = True

    def feed(self, token_id: int) -> int | None:
        """Take the next generated token; the offset in ``text`` where the conjunction that gets
        the hint ends, once it is complete (the request must end here), else None."""
        piece = self._stream.step(self._tokenizer, token_id)
        if not piece:
            return None
        before = len(self.text)
        self.text += piece
        hits = []
        for conjunction in self.stops.conjunctions:
            start = self.text.find(conjunction, max(0, before - len(conjunction) + 1))
            while start >= 0:
                hits.append((start + len(conjunction), start))
                start = self.text.find(conjunction, start + 1)
        for end, start in sorted(hits):
            if self._eligible(start, end):
                if self.skips_left == 0:
                    return end
                self.skips_left -= 1
        return None

    def _eligible(self, start: int, end: int) -> bool:
        if self._thinking and THINK_END in self.text[:end]:
            self._thinking = False
        if not self._thinking or self.text[end : end + 1].isalnum():
            return False
        previous = (self.stops.context + self.text[:start])[-1:]
        if previous.isalnum():
            return False
        segments = parse(self.stops.context + self.text[:end])
        return not (segments and segments[-1].kind == "code" and not segments[-1].closed)


def hinted_conjunction_end(
    tokenizer: Any, stops: HintStops, prompt_ids: Sequence[int], token_ids: Sequence[int]
) -> tuple[str, int] | None:
    """For a request that ended on an end-of-sequence token: the text up to the conjunction
    the engine stopped after and that conjunction's end, or None when the model itself ended."""
    if not token_ids:
        return None
    watch = ConjunctionWatch(tokenizer, stops, prompt_ids)
    last = len(token_ids) - 2  # the token before the end-of-sequence the watch forced
    for index, token_id in enumerate(token_ids[:-1]):
        end = watch.feed(token_id)
        if end is not None:
            return (watch.text, end) if index == last else None
    return None
