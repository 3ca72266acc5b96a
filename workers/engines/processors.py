"""vLLM logits processors the local engine registers when it starts (see ``hint_stops``).

This module imports vLLM: the engine core process loads it by name
(``local.HINT_STOPS_PROCESSOR``).
"""

from __future__ import annotations

from typing import Any

import torch
from vllm.tokenizers.registry import cached_tokenizer_from_config
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from workers.engines.hint_stops import ConjunctionWatch, HintStops


class _RequestWatch:
    """One request's logits function: the end-of-sequence token only, once the watch says so."""

    def __init__(self, tokenizer: Any, stops: HintStops, eos: int) -> None:
        self.tokenizer, self.stops, self.eos = tokenizer, stops, eos
        self.watch: ConjunctionWatch | None = None
        self.seen = 0
        self.stop = False

    def __call__(self, prompt_ids: list[int], output_ids: list[int], logits: torch.Tensor):
        if self.watch is None:
            self.watch = ConjunctionWatch(self.tokenizer, self.stops, prompt_ids)
        while not self.stop and self.seen < len(output_ids):
            self.stop = self.watch.feed(output_ids[self.seen]) is not None
            self.seen += 1
        if self.stop:
            logits.fill_(float("-inf"))
            logits[self.eos] = 0.0
        return logits


class HintStopsProcessor(AdapterLogitsProcessor):
    """Ends a request right after its drawn conjunction; a request opts in with
    ``SamplingParams.extra_args = HintStops(...).to_args()`` (the server: ``vllm_xargs``)."""

    def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool) -> None:
        super().__init__(vllm_config, device, is_pin_memory)
        self.tokenizer = cached_tokenizer_from_config(vllm_config.model_config)

    def is_argmax_invariant(self) -> bool:
        return False

    def new_req_logits_processor(self, params: Any) -> _RequestWatch | None:
        stops = HintStops.from_args(params.extra_args)
        if stops is None or params.eos_token_id is None:
            return None
        return _RequestWatch(self.tokenizer, stops, params.eos_token_id)
