"""Hint-infer: the tool loop that turns one prompt into one START-format trajectory.

Pure asyncio, no Django: each trajectory is its own coroutine against an async engine, and
``run_many`` runs many at once, yielding each result as soon as it ends.

The stop/resume protocol. Every engine request carries stop strings, kept in the returned text:

- ``"\\n```\\n"``: a line that is exactly ```` ``` ````, i.e. a closing fence. If it closes a
  ```` ```python ```` block, the code runs (``tools.runner``) and the rollout appends
  ``curation.trajectory.output_block(...)``; past ``tools.max_calls`` it appends a short notice
  instead, once, and a further code block ends the trajectory (``max_tool_calls``).
- ``"```output"``: the model must never write an output block: the fence is cut off; a code block
  just before it is closed (if needed) and run, as ToRA does.
- the conjunctions of the hint config ("Wait", "Alternatively"): with the config's probability and
  up to its cap, ``", " + hint`` is appended (outside code blocks, before ``</think>``). An engine
  with ``hint_stops`` (the local one) does not stop at the others: the rollout draws how many
  to write past and the engine ends the request after the chosen one
  (``workers.engines.hint_stops``); other engines stop at each and a coin decides.
- ``"</think>"``: withheld (cut off), an end hint appended, generation resumed; up to
  ``end_repeats`` times (test-time scaling). A model that ends with EOS while still thinking gets
  the same treatment. Once the end hints are spent ``</think>`` is no longer a stop string.

Code runs only before ``</think>`` (the answer's final code is the answer, not a tool call).
Every resume sends the previous request's prompt ids plus the ids the engine generated, and only
the text the rollout appends is tokenized, so the engine's prefix cache hits. When a stop string
ends inside the last generated token (or text is cut), the ids are re-aligned to the text: the
trailing tokens that do not match are dropped and the rest of the text is tokenized. The
segments are kept as text is appended (``curation.trajectory.SegmentBuilder``), never re-parsed
whole.

Baseline samples use the same loop with ``hint_config=None``; code the model writes on its own
still runs (tools on: START-0 and START are tool-using models, so RFT and eval rounds need it).
``tools=None`` turns tools off for the paper's plain no-tool baseline.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from curation.hints import HintConfig, end_hint_allowed, hint_text, pick_hint
from curation.hints import should_insert_at_conjunction as _insert_at_conjunction
from curation.trajectory import (
    CLOSE_FENCE,
    OUTPUT_FENCE,
    THINK_END,
    Segment,
    SegmentBuilder,
    output_block,
)
from workers.engines.base import (
    Engine,
    EngineError,
    EngineUnavailable,
    Generation,
    GenerationParams,
)
from workers.engines.hint_stops import HintStops, context_for, draw_skips, hinted_conjunction_end

CODE_CLOSE_STOP = f"\n{CLOSE_FENCE}\n"
FINISH_REASONS = (
    "stop",
    "length",
    "engine_error",
    "tool_error",
    "max_tool_calls",
    "cancelled",
    "context_overflow",
)
# How many trailing generated tokens re-alignment may drop before it re-tokenizes the whole chunk.
_ALIGN_WINDOW = 8
# A model that writes its own ```output fence again and again, with nothing to run, is stopped.
_MAX_ROGUE_OUTPUT_FENCES = 3


class Execution(Protocol):
    """What a tool runner returns (workers.sandbox.Execution)."""

    exit_code: int | None
    reason: str | None
    wall_s: float

    def as_output_block_text(self) -> str: ...


ToolRunner = Callable[..., Awaitable[Execution]]


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int = 4096  # the completion's budget: generated plus appended tokens
    temperature: float = 0.0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if self.max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be positive, got {self.max_new_tokens}")


@dataclass(frozen=True)
class ToolConfig:
    """How model-written code runs. ``runner(code)`` or, in notebook mode,
    ``runner(code, session=key)``: one session per trajectory keeps state across its cells."""

    runner: ToolRunner
    max_calls: int = 6  # the paper's cap; a round passes its HintConfig.max_tool_calls here
    notebook: bool = False
    # False: baseline samples (no hint config) run no code, as the paper's greedy base
    plain_samples: bool = True
    limit_notice: str = (
        "Tool-call limit ({max_calls}) reached: the code above was not run. "
        "Continue without running more code."
    )

    def __post_init__(self) -> None:
        if self.max_calls < 0:
            raise ValueError(f"max_calls must be non-negative, got {self.max_calls}")


@dataclass(frozen=True)
class HintInsertion:
    name: str
    site: str  # "conjunction" or "end"
    start: int  # char offsets of the hint text in the completion
    end: int
    text: str


@dataclass(frozen=True)
class ToolCall:
    code: str
    output: str  # the output block's body
    exit_code: int | None
    reason: str | None  # the runner's reason (timeout, memory, ...), "limit" for the notice
    wall_s: float  # as the rollout waited for it (queueing in the runner's pool included)
    start: int  # char offsets of the output block in the completion
    end: int


@dataclass(frozen=True)
class Request:
    """One engine request: a first generation or a resume."""

    prompt_tokens: int
    cached_tokens: int | None
    # Leading prompt tokens shared with the previous request's prompt plus generated tokens:
    # at most what a prefix cache can serve (in whole KV blocks); 0 for the first request.
    # (vLLM usually has no KV for the last sampled token; with a step already scheduled past a
    # stop string it sometimes has.)
    reusable_tokens: int
    new_tokens: int
    finish_reason: str
    stop_reason: str | int | None
    wall_s: float


@dataclass
class RolloutResult:
    text: str = ""
    finish_reason: str = "stop"
    error: str | None = None
    prompt_tokens: int = 0
    completion_ids: list[int] = field(default_factory=list)
    generated_tokens: int = 0  # written by the model
    appended_tokens: int = 0  # written by the rollout: hints, output blocks, notices
    hints: list[HintInsertion] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    generation_s: float = 0.0
    tool_s: float = 0.0
    wall_s: float = 0.0
    # The text's segments (``curation.trajectory.parse`` without hints), kept as text is appended,
    # and the time spent keeping them.
    segments: list[Segment] = field(default_factory=list)
    parse_s: float = 0.0

    @property
    def resumed_requests(self) -> list[Request]:
        return self.requests[1:]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures (the completion ids and segments left out)."""
        data = asdict(self)
        del data["completion_ids"], data["segments"]
        return data


class _Cancelled(Exception):
    pass


class _OutOfBudget(Exception):
    """What the rollout was about to append does not fit the token budget or the context."""


def chat_prompt(tokenizer: Any, user: str, *, system: str | None = None) -> str:
    """The prompt text for one user turn, through the tokenizer's chat template."""
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": user})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False)) if text else []


def _decode(tokenizer: Any, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def align_ids(tokenizer: Any, ids: list[int], text: str) -> list[int]:
    """Token ids that decode to exactly ``text``, reusing as many leading ``ids`` as possible.

    Usually ``ids`` already decode to ``text``. They do not when a stop string ends inside the
    last token, when the rollout cut a stop string off, or after an EOS token (not in the text).
    """
    if _decode(tokenizer, ids) == text:
        return list(ids)
    for keep in range(len(ids) - 1, max(len(ids) - 1 - _ALIGN_WINDOW, -1), -1):
        head = _decode(tokenizer, ids[:keep])
        if text.startswith(head):
            return list(ids[:keep]) + _encode(tokenizer, text[len(head) :])
    return _encode(tokenizer, text)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


async def _race(awaitable: Awaitable[Any], cancel: asyncio.Event | None) -> Any:
    """Await ``awaitable`` unless ``cancel`` is set first (then cancel it, raise _Cancelled)."""
    if cancel is None:
        return await awaitable
    if cancel.is_set():
        raise _Cancelled
    work = asyncio.ensure_future(awaitable)
    waiter = asyncio.ensure_future(cancel.wait())
    try:
        await asyncio.wait({work, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if work.done():
        return work.result()
    work.cancel()
    await asyncio.wait({work})  # let it clean up (vLLM aborts the request); its outcome is moot
    raise _Cancelled


class RolloutState:
    """One trajectory's state machine: ``generate()`` one request, then ``advance()`` on it.

    ``rollout`` drives it turn by turn; other drivers (the benchmark's synchronous rounds)
    interleave many states their own way. Use ``RolloutState.start``.
    """

    def __init__(
        self,
        engine: Engine,
        prompt_ids: list[int],
        *,
        problem: Any,
        hint_config: HintConfig | None,
        tools: ToolConfig | None,
        sampling: Sampling,
        rng: random.Random,
        cancel: asyncio.Event | None,
        session: str | None,
    ) -> None:
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self.prompt_ids = prompt_ids
        self.problem = problem
        self.hints = hint_config
        self.tools = tools
        self.sampling = sampling
        self.rng = rng
        self.cancel = cancel
        self.session = session
        self.result = RolloutResult(prompt_tokens=len(prompt_ids))
        self.conjunction_hints = 0
        self.end_hints = 0
        self.notice_given = False
        self.rogue_fences = 0
        self.word_goes_on = False  # the last stop matched inside a longer word
        self.previous_tokens: list[int] = []
        self._segments = SegmentBuilder()
        self.result.segments = self._segments.segments
        self._thinking = True
        # The engine ends a request after a drawn conjunction (see workers.engines.hint_stops)
        # instead of stopping at every one; the current request's draw and prompt's last ids.
        self.engine_hint_stops = bool(getattr(engine, "hint_stops", False))
        self._request_stops: HintStops | None = None
        self._request_prompt_tail: list[int] = []

    @classmethod
    def start(
        cls,
        engine: Engine,
        *,
        prompt: str | None = None,
        prompt_ids: list[int] | None = None,
        problem: Any = None,
        hint_config: HintConfig | None = None,
        tools: ToolConfig | None = None,
        sampling: Sampling | None = None,
        rng: random.Random | None = None,
        cancel: asyncio.Event | None = None,
        session: str | None = None,
    ) -> RolloutState:
        """Check the arguments (see ``rollout``) and set up a trajectory."""
        if (prompt is None) == (prompt_ids is None):
            raise ValueError("give exactly one of prompt and prompt_ids")
        if hint_config is not None:
            hint_config.validate()
        if prompt_ids is None:
            prompt_ids = _encode(engine.tokenizer, prompt or "")
        if tools is not None and hint_config is None and not tools.plain_samples:
            tools = None
        if session is None and tools is not None and tools.notebook:
            session = uuid.uuid4().hex
        return cls(
            engine,
            list(prompt_ids),
            problem=problem,
            hint_config=hint_config,
            tools=tools,
            sampling=sampling or Sampling(),
            rng=rng or random.Random(),
            cancel=cancel,
            session=session,
        )

    def overflows(self) -> bool:
        """Whether the prompt leaves no room to generate (then the result says so)."""
        n, limit = len(self.prompt_ids), self.engine.max_model_len
        if 0 < n < limit:
            return False
        self.result.finish_reason = "context_overflow"
        self.result.error = (
            f"prompt of {n} tokens leaves no room in the context of {limit} tokens"
            if n
            else "empty prompt"
        )
        return True

    # -- state ------------------------------------------------------------------------------
    @property
    def text(self) -> str:
        return self.result.text

    def thinking(self) -> bool:
        return self._thinking

    def in_open_code(self) -> bool:
        last = self._segments.last
        return last is not None and last.kind == "code" and not last.closed

    def _extend(self, text: str, ids: list[int]) -> None:
        """Append to the completion: its text, its ids and its segments."""
        if self._thinking and THINK_END in self.text[-len(THINK_END) + 1 :] + text:
            self._thinking = False
        self.result.text += text
        self.result.completion_ids += ids
        started = time.perf_counter()
        self._segments.append(text)
        self.result.parse_s += time.perf_counter() - started

    def _append(self, *pieces: str) -> tuple[int, int]:
        """Append the rollout's own text (hints, output blocks, notices), all or nothing.

        Returns the char offsets of the last piece. Raises _OutOfBudget, appending nothing,
        when the pieces do not fit what is left of the budget and the context.
        """
        encoded = [_encode(self.tokenizer, piece) for piece in pieces]
        if sum(map(len, encoded)) > self.room():
            raise _OutOfBudget
        for piece, ids in zip(pieces, encoded, strict=True):
            start = len(self.result.text)
            self._extend(piece, ids)
            self.result.appended_tokens += len(ids)
        return start, len(self.result.text)

    def stops(self) -> tuple[str, ...]:
        stops = [OUTPUT_FENCE]
        thinking = self.thinking()
        if self.tools is not None and thinking:
            stops.append(CODE_CLOSE_STOP)
        if self.hints is not None and self.conjunction_hints_open() and not self.engine_hint_stops:
            stops.extend(self.hints.conjunctions)  # an engine that cannot draw stops at each
        if (
            self.hints is not None
            and thinking
            and end_hint_allowed(self.hints, end_hints_so_far=self.end_hints)
        ):
            stops.append(THINK_END)
        return tuple(stops)

    def conjunction_hints_open(self) -> bool:
        """Whether a conjunction the model writes now may get a hint."""
        return (
            self.hints is not None
            and self.thinking()
            and self.conjunction_hints < self.hints.max_hints
            and self.hints.conjunction_probability > 0
        )

    def room(self) -> int:
        """Completion tokens still allowed: by the budget and by the context, whichever is less."""
        used = len(self.result.completion_ids)
        return min(
            self.sampling.max_new_tokens - used,
            self.engine.max_model_len - len(self.prompt_ids) - used,
        )

    # -- engine -----------------------------------------------------------------------------
    async def generate(self) -> Generation | None:
        """One request; None when the context or the token budget is used up."""
        room = self.room()
        if room <= 0:
            return None
        seed = self.rng.randrange(2**31) if self.sampling.temperature > 0 else None
        self._request_stops = None
        if self.engine_hint_stops and self.conjunction_hints_open():
            assert self.hints is not None
            self._request_stops = HintStops(
                self.hints.conjunctions,
                draw_skips(self.hints.conjunction_probability, self.rng),
                context_for(self._segments.last),
            )
        params = GenerationParams(
            max_tokens=room,
            temperature=self.sampling.temperature,
            top_p=self.sampling.top_p,
            seed=seed,
            stop=self.stops(),
            hint_stops=self._request_stops,
        )
        prompt = self.prompt_ids + self.result.completion_ids
        self._request_prompt_tail = prompt[-8:]
        generation = await _race(self.engine.generate(prompt, params), self.cancel)
        reusable = _common_prefix(self.previous_tokens, prompt)
        self.previous_tokens = prompt + generation.token_ids
        self.result.requests.append(
            Request(
                prompt_tokens=len(prompt),
                cached_tokens=generation.cached_tokens,
                reusable_tokens=reusable,
                new_tokens=len(generation.token_ids),
                finish_reason=generation.finish_reason,
                stop_reason=generation.stop_reason,
                wall_s=generation.wall_s,
            )
        )
        self.result.generation_s += generation.wall_s
        self.result.generated_tokens += len(generation.token_ids)
        return generation

    def commit(self, generation: Generation, text: str) -> None:
        """Add what the model wrote (``text``: its output, perhaps with a stop string cut off)."""
        ids = align_ids(self.tokenizer, generation.token_ids, text)
        over = len(ids) - self.room()
        if over > 0:  # re-tokenized text can take more ids than the engine generated
            ids = ids[: len(ids) - over]
            text = _decode(self.tokenizer, ids)
        self._extend(text, ids)
        if over > 0:
            raise _OutOfBudget

    # -- actions at a stop ------------------------------------------------------------------
    def pending_code(self) -> str | None:
        """The body of a python block closed at the very end of the text, if any."""
        last = self._segments.last  # segments partition the text: the last one ends it
        if last is not None and last.kind == "code" and last.closed:
            return last.body
        return None

    async def run_code(self, code: str) -> str | None:
        """Run ``code`` and append its output block; a finish reason when the loop must end."""
        assert self.tools is not None
        newline = "" if self.text.endswith("\n") else "\n"
        if len(self.result.tool_calls) >= self.tools.max_calls:
            if self.notice_given:
                return "max_tool_calls"
            self.notice_given = True
            notice = self.tools.limit_notice.format(max_calls=self.tools.max_calls)
            start, end = self._append(newline, output_block(notice))
            self.result.tool_calls.append(ToolCall(code, notice, None, "limit", 0.0, start, end))
            return None
        kwargs = {"session": self.session} if self.tools.notebook else {}
        started = time.perf_counter()
        try:
            execution = await _race(self.tools.runner(code, **kwargs), self.cancel)
        except _Cancelled:
            raise
        except Exception as exc:
            self.result.error = f"tool runner failed: {type(exc).__name__}: {exc}"
            return "tool_error"
        wall_s = time.perf_counter() - started
        self.result.tool_s += wall_s
        body = execution.as_output_block_text()
        start, end = self._append(newline, output_block(body))
        self.result.tool_calls.append(
            ToolCall(code, body, execution.exit_code, execution.reason, wall_s, start, end)
        )
        return None

    def insert_hint(self, site: str, prefix: str) -> None:
        assert self.hints is not None
        hint = pick_hint(self.hints, rng=self.rng, problem=self.problem)
        text = hint_text(hint, self.problem)
        start, end = self._append(prefix, text)
        self.result.hints.append(HintInsertion(hint.name, site, start, end, text))

    def at_conjunction(self, conjunction: str, *, drawn: bool = False) -> None:
        """A coin for the conjunction that ends the text; ``drawn``: the engine stopped after
        the conjunction the draw chose (eligible and hinted already)."""
        assert self.hints is not None
        before = self.text[: len(self.text) - len(conjunction)]
        at_word_start = not before or not before[-1].isalnum()
        if drawn or (
            at_word_start
            and not self.in_open_code()
            and _insert_at_conjunction(
                self.hints, rng=self.rng, conjunction_hints_so_far=self.conjunction_hints
            )
        ):
            self.conjunction_hints += 1
            self.insert_hint("conjunction", ", ")

    def end_hint(self) -> None:
        self.end_hints += 1
        self.insert_hint("end", "" if not self.text or self.text.endswith("\n") else "\n")

    # -- the loop ---------------------------------------------------------------------------
    async def run(self) -> None:
        while not await self.advance(await self.generate()):
            pass

    async def advance(self, generation: Generation | None) -> bool:
        """Take in one request's output and act on its stop; True when the trajectory ended."""
        if generation is None:
            self.result.finish_reason = "length"
            return True
        text, stop = generation.text, generation.stop_reason
        if stop in (OUTPUT_FENCE, THINK_END) and text.endswith(stop):
            text = text[: -len(stop)]  # cut off: never kept (``</think>`` only withheld)
        self.word_goes_on = False
        drawn = self._drawn_conjunction(generation)
        if drawn is not None:
            text, stop = drawn
        elif self.hints is not None and stop in self.hints.conjunctions:
            written = _decode(self.tokenizer, generation.token_ids)
            if written.startswith(text) and written[len(text) : len(text) + 1].isalnum():
                # The stop matched inside the last token's longer word ("Waiting"): keep the
                # word as the model wrote it; it is no conjunction.
                text, self.word_goes_on = written, True
        try:
            self.commit(generation, text)
            if generation.finish_reason == "length":
                self.result.finish_reason = "length"
                return True
            if generation.finish_reason != "stop":
                self.result.finish_reason = "engine_error"
                self.result.error = f"the engine ended the request: {generation.finish_reason}"
                return True
            finish = await self.after_stop(stop, drawn=drawn is not None)
        except _OutOfBudget:
            finish = "length"  # a hint or an output block that does not fit ends it here
        if finish is not None:
            self.result.finish_reason = finish
            return True
        return False

    def _drawn_conjunction(self, generation: Generation) -> tuple[str, str] | None:
        """When the engine ended the request after the drawn conjunction: the text up to it
        and that conjunction."""
        stops = self._request_stops
        if stops is None or generation.finish_reason != "stop" or generation.stop_reason:
            return None
        found = hinted_conjunction_end(
            self.tokenizer, stops, self._request_prompt_tail, generation.token_ids
        )
        if found is None:
            return None
        text = found[0][: found[1]]
        return text, next(c for c in stops.conjunctions if text.endswith(c))

    async def after_stop(self, stop: str | int | None, *, drawn: bool = False) -> str | None:
        """Act on a stop; a finish reason when the trajectory is done."""
        if stop == OUTPUT_FENCE:
            return await self.after_rogue_output_fence()
        self.rogue_fences = 0
        thinking = self.thinking()
        if self.tools is not None and thinking:
            code = self.pending_code()
            if code is not None:
                return await self.run_code(code)
        if stop == CODE_CLOSE_STOP:
            return None  # an unlabelled block closed: nothing to run
        if self.hints is not None and isinstance(stop, str) and stop in self.hints.conjunctions:
            if thinking and not self.word_goes_on:
                self.at_conjunction(stop, drawn=drawn)
            return None
        if stop == THINK_END or (stop is None and thinking and self.hints is not None):
            # The end of thinking (withheld), or EOS before it: an end hint, while allowed.
            if end_hint_allowed(self.hints, end_hints_so_far=self.end_hints) and not (
                self.in_open_code()
            ):
                self.end_hint()
                return None
            if stop == THINK_END:
                self._append(THINK_END)  # withheld but no hint fits here: give it back
                return None
        return "stop"

    async def after_rogue_output_fence(self) -> str | None:
        """The model wrote ```output itself (cut off already)."""
        if self.tools is not None and self.thinking():
            if self.in_open_code():
                # It fused the closing fence into the output fence: close the block for it.
                self._append(("" if self.text.endswith("\n") else "\n") + CLOSE_FENCE + "\n")
            code = self.pending_code()
            if code is not None:
                self.rogue_fences = 0
                return await self.run_code(code)
        self.rogue_fences += 1
        if self.rogue_fences >= _MAX_ROGUE_OUTPUT_FENCES:
            self.result.error = "the model kept writing its own ```output block"
            return "stop"
        return None


async def rollout(
    engine: Engine,
    *,
    prompt: str | None = None,
    prompt_ids: list[int] | None = None,
    problem: Any = None,
    hint_config: HintConfig | None = None,
    tools: ToolConfig | None = None,
    sampling: Sampling | None = None,
    rng: random.Random | None = None,
    cancel: asyncio.Event | None = None,
    session: str | None = None,
    raise_unavailable: bool = False,
) -> RolloutResult:
    """Generate one trajectory with Hint-infer; always returns a result with a finish reason.

    ``prompt`` is the full prompt text (chat template applied, see ``chat_prompt``) or give
    ``prompt_ids``. ``hint_config=None`` is a baseline sample; ``tools=None`` runs no code.
    ``cancel`` set: the trajectory ends at once with ``cancelled``. ``session`` names the
    notebook session (``tools.notebook``; default: a fresh one per trajectory).
    ``raise_unavailable``: let EngineUnavailable propagate (``run_many`` fails the round fast)
    instead of recording ``engine_error``.
    """
    started = time.perf_counter()
    state = RolloutState.start(
        engine,
        prompt=prompt,
        prompt_ids=prompt_ids,
        problem=problem,
        hint_config=hint_config,
        tools=tools,
        sampling=sampling,
        rng=rng,
        cancel=cancel,
        session=session,
    )
    result = state.result
    if state.overflows():
        return result
    try:
        await state.run()
    except _Cancelled:
        result.finish_reason = "cancelled"
    except EngineUnavailable as exc:
        if raise_unavailable:
            raise
        result.finish_reason, result.error = "engine_error", str(exc)
    except EngineError as exc:
        result.finish_reason, result.error = "engine_error", str(exc)
    finally:
        result.wall_s = time.perf_counter() - started
    return result


@dataclass(frozen=True)
class RolloutJob:
    """One trajectory to generate; ``key`` is the caller's, handed back with the result."""

    key: Any
    prompt: str | None = None
    prompt_ids: list[int] | None = None
    problem: Any = None
    hint_config: HintConfig | None = None
    seed: int | None = None


async def run_many(
    engine: Engine,
    jobs: Iterable[RolloutJob],
    *,
    tools: ToolConfig | None,
    sampling: Sampling | None = None,
    concurrency: int = 64,
    cancel: asyncio.Event | None = None,
) -> AsyncIterator[tuple[RolloutJob, RolloutResult]]:
    """Run ``jobs`` as concurrent trajectories, yielding each ``(job, result)`` as it ends.

    At most ``concurrency`` run at once; jobs are taken from the iterable lazily. When ``cancel``
    is set no new job starts and those in flight end with ``cancelled`` (and are yielded).
    EngineUnavailable from any trajectory cancels the others and propagates: a down engine
    fails the round fast. Closing the iterator early cancels what is in flight.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    pending_jobs = iter(jobs)
    running: dict[asyncio.Task[RolloutResult], RolloutJob] = {}

    def start_next() -> bool:
        if cancel is not None and cancel.is_set():
            return False
        job = next(pending_jobs, None)
        if job is None:
            return False
        task = asyncio.ensure_future(
            rollout(
                engine,
                prompt=job.prompt,
                prompt_ids=job.prompt_ids,
                problem=job.problem,
                hint_config=job.hint_config,
                tools=tools,
                sampling=sampling,
                rng=random.Random(job.seed),
                cancel=cancel,
                raise_unavailable=True,
            )
        )
        running[task] = job
        return True

    try:
        while len(running) < concurrency and start_next():
            pass
        while running:
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                job = running.pop(task)
                result = task.result()  # EngineUnavailable propagates from here
                yield job, result
                start_next()
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
