"""The Hint-infer loop on the real tiny policy, a real vLLM engine and the real sandbox.

One engine for the module (a module-scoped fixture on one event loop: AsyncLLM is bound to the
loop it first runs on). The few tests at the end drive the loop with ``ScriptedEngine``, a test
double that replays given texts, for situations a real model cannot be made to produce
(a conjunction inside a code block, a code block that never closes, a model-written output
fence); the tokenizer there is real.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curation.hints import HINTS, Hint, HintConfig
from curation.problems import ProblemSpec
from curation.prompting import SYSTEM_PROMPT
from curation.trajectory import OUTPUT_FENCE, THINK_END, output_block, parse, render
from training.tiny_policy import build_tiny_policy, sample_problems
from workers import sandbox
from workers.engines import (
    EngineConfig,
    EngineError,
    EngineUnavailable,
    Generation,
    GenerationParams,
)
from workers.engines.hint_stops import ConjunctionWatch, HintStops, hinted_conjunction_end
from workers.rollout import (
    CODE_CLOSE_STOP,
    FINISH_REASONS,
    RolloutJob,
    RolloutResult,
    Sampling,
    ToolConfig,
    align_ids,
    chat_prompt,
    rollout,
    run_many,
)

MAX_MODEL_LEN = 1024
ALWAYS = HintConfig(conjunction_probability=1.0, max_hints=2, end_repeats=1)


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def engine(loop):
    from workers.engines.local import LocalEngine

    config = EngineConfig(
        model=str(build_tiny_policy()),
        max_model_len=MAX_MODEL_LEN,
        enforce_eager=True,
        kv_cache_gib=1,
    )
    engine = LocalEngine(config)
    yield engine
    loop.run_until_complete(engine.close())


def tools(**kwargs) -> ToolConfig:
    return ToolConfig(runner=sandbox.arun, **kwargs)


def jobs_for(tokenizer, problems, *, hint_config=None, seed=0) -> list[RolloutJob]:
    return [
        RolloutJob(
            key=i,
            prompt=chat_prompt(tokenizer, p.prompt, system=SYSTEM_PROMPT),
            problem=p,
            hint_config=hint_config,
            seed=seed + i,
        )
        for i, p in enumerate(problems)
    ]


def collect(loop, engine, jobs, **kwargs) -> list[tuple[RolloutJob, RolloutResult]]:
    async def go():
        return [item async for item in run_many(engine, jobs, **kwargs)]

    return loop.run_until_complete(go())


def check_invariants(
    tokenizer, result: RolloutResult, *, max_new_tokens: int, max_model_len: int = MAX_MODEL_LEN
) -> None:
    """What every trajectory satisfies, whatever the model wrote."""
    text = result.text
    assert result.finish_reason in FINISH_REASONS
    assert render(parse(text)) == text
    # The segments the rollout kept as it appended are those of parsing the final text.
    assert result.segments == parse(text)
    # The ids the next resume would send decode to exactly the text (prefix-cache resumes).
    assert tokenizer.decode(result.completion_ids, skip_special_tokens=False) == text
    # The budget holds for everything in the completion: generated and appended alike.
    assert len(result.completion_ids) <= max_new_tokens
    assert result.prompt_tokens + len(result.completion_ids) <= max_model_len
    for hint in result.hints:
        assert text[hint.start : hint.end] == hint.text
    for call in result.tool_calls:
        assert text[call.start : call.end] == output_block(call.output)
    # The model never writes an output fence: every one outside the hints (the code debug hint
    # shows one) is a recorded tool call.
    outside_hints = "".join(
        s.text for s in parse(text, hints=[h.text for h in result.hints]) if s.kind != "hint"
    )
    assert outside_hints.count(OUTPUT_FENCE) == len(result.tool_calls)


@pytest.fixture(scope="module")
def hinted(loop, engine):
    """Hinted samples of math problems, greedy, code through the real sandbox."""
    problems = sample_problems(8, seed=11) + sample_problems(4, seed=12, kind="multi")
    jobs = jobs_for(engine.tokenizer, problems, hint_config=ALWAYS)
    return collect(
        loop, engine, jobs, tools=tools(), sampling=Sampling(max_new_tokens=600), concurrency=6
    )


# -- the real engine ---------------------------------------------------------------------------


@pytest.mark.vllm
def test_hinted_rollouts_hold_real_outputs_of_the_code_they_ran(engine, hinted):
    assert len(hinted) == 12
    calls = [call for _, result in hinted for call in result.tool_calls]
    assert len(calls) >= 6, [r.text for _, r in hinted]
    for _, result in hinted:
        check_invariants(engine.tokenizer, result, max_new_tokens=600)
        assert result.finish_reason in ("stop", "length", "max_tool_calls"), result.error
    for call in calls:
        assert call.wall_s > 0
        if call.reason in (None, "exception", "syntax error"):
            # Re-running the cell gives the same output: the block holds what the code printed.
            assert sandbox.run(call.code).as_output_block_text() == call.output
    hints = [hint for _, result in hinted for hint in result.hints]
    assert hints, "with end hints on, a sample that ends its thinking gets a hint"
    # The engine draws conjunction stops itself: no request stops at a conjunction.
    requests = [request for _, result in hinted for request in result.requests]
    assert all(request.stop_reason not in ALWAYS.conjunctions for request in requests)
    assert all(hint.text.endswith("```python") for hint in hints)


@pytest.mark.vllm
def test_end_hints_replace_the_withheld_end_of_thinking(hinted):
    for _, result in hinted:
        for hint in result.hints:
            if hint.site == "end":
                # What follows the hint is the model's code, not the end of thinking.
                assert not result.text[hint.end :].startswith(THINK_END)
        if result.finish_reason == "stop" and THINK_END in result.text:
            assert sum(h.site == "end" for h in result.hints) == 1


@pytest.mark.vllm
def test_resumes_are_served_from_the_prefix_cache(hinted):
    resumed = [req for _, result in hinted for req in result.resumed_requests]
    assert resumed
    for request in resumed:
        assert request.reusable_tokens > 0
        assert request.cached_tokens is not None
        assert request.cached_tokens <= request.prompt_tokens
        if request.reusable_tokens >= 64:
            assert request.cached_tokens > 0
    cached = sum(r.cached_tokens for r in resumed)
    assert cached / sum(r.prompt_tokens for r in resumed) > 0.5


@pytest.mark.vllm
def test_baseline_runs_the_code_the_model_writes_without_hints(loop, engine):
    problems = sample_problems(4, seed=13, kind="multi")
    results = collect(
        loop,
        engine,
        jobs_for(engine.tokenizer, problems),
        tools=tools(),
        sampling=Sampling(max_new_tokens=600),
    )
    for _, result in results:
        check_invariants(engine.tokenizer, result, max_new_tokens=600)
        assert result.hints == []
    assert sum(len(r.tool_calls) for _, r in results) >= 4


@pytest.mark.vllm
def test_tools_off_runs_no_code_and_keeps_no_output_fence(loop, engine):
    problems = sample_problems(4, seed=13, kind="multi")
    results = collect(
        loop,
        engine,
        jobs_for(engine.tokenizer, problems),
        tools=None,
        sampling=Sampling(max_new_tokens=300),
    )
    for _, result in results:
        check_invariants(engine.tokenizer, result, max_new_tokens=300)
        assert result.tool_calls == [] and OUTPUT_FENCE not in result.text


def generation_from_text(tokenizer, text: str, params, prompt_tokens: int) -> Generation:
    """What vLLM returns for a model that writes ``text``: cut after the earliest-ending stop
    string (kept), or at max_tokens (-> "length"); no stop string hit reads as EOS."""
    hits = [(text.find(s) + len(s), s) for s in params.stop if s in text]
    stop = min(hits)[1] if hits else None
    if stop is not None:
        text = text[: min(hits)[0]]
    ids = tokenizer.encode(text, add_special_tokens=False)
    finish = "stop"
    if len(ids) > params.max_tokens:
        ids, stop, finish = ids[: params.max_tokens], None, "length"
        text = tokenizer.decode(ids)
    return Generation(text, ids, finish, stop, prompt_tokens, 0, 0.0)


class Steered:
    """Fault injection around the real engine, to force a branch of the loop by construction.

    The engine generates every request; ``steer(completion_so_far, generation)`` may replace
    what it wrote with a fixed continuation (None keeps it), cut at the request's stop strings
    and max_tokens as vLLM would. The branch is then taken whichever tokens this CPU's numerics
    made the engine pick.
    """

    def __init__(self, engine, steer) -> None:
        self.engine, self.steer = engine, steer
        self.tokenizer, self.max_model_len = engine.tokenizer, engine.max_model_len

    async def generate(self, prompt_ids, params) -> Generation:
        real = await self.engine.generate(prompt_ids, params)
        completion = self.tokenizer.decode(prompt_ids, skip_special_tokens=False)
        completion = completion.rsplit("<|im_start|>assistant\n", 1)[-1]
        text = self.steer(completion, real)
        if text is None:
            return real
        return generation_from_text(self.tokenizer, text, params, len(prompt_ids))


CELL = "```python\nprint(6 * 7)\n```\n"
END_OF_THINKING = "So it is 42.\n</think>\n\n\\boxed{42}"


@pytest.mark.vllm
def test_past_max_tool_calls_a_notice_then_the_trajectory_ends(loop, engine):
    # Whatever the engine writes, each request is steered to a new cell: 1 runs, 1 gets the
    # notice, the third ends the trajectory.
    steered = Steered(engine, lambda completion, real: CELL)
    problems = sample_problems(3, seed=14, kind="multi")
    results = collect(
        loop,
        steered,
        jobs_for(engine.tokenizer, problems),
        tools=tools(max_calls=1),
        sampling=Sampling(max_new_tokens=600),
    )
    assert len(results) == 3
    for _, result in results:
        check_invariants(engine.tokenizer, result, max_new_tokens=600)
        real, notice = result.tool_calls
        assert real.reason is None and real.output == "42"
        assert notice.reason == "limit" and "Tool-call limit (1) reached" in notice.output
        assert result.finish_reason == "max_tool_calls"
        assert len(result.requests) == 3


def steer_to_end_of_thinking(completion: str, real: Generation) -> str | None:
    """Keep the engine's code after a hint (real cells, really run); otherwise end the thinking
    (or, after a hint whose cell the engine did not close, close one for it)."""
    after_hint = completion.endswith("```python")
    if after_hint and real.stop_reason == CODE_CLOSE_STOP and THINK_END not in real.text:
        return None
    return "\nprint(6 * 7)\n```\n" if after_hint else END_OF_THINKING


@pytest.mark.vllm
def test_test_time_scaling_repeats_the_end_hint(loop, engine):
    problems = sample_problems(4, seed=15)
    config = HintConfig(conjunction_probability=0.0, end_repeats=3)
    results = collect(
        loop,
        Steered(engine, steer_to_end_of_thinking),
        jobs_for(engine.tokenizer, problems, hint_config=config),
        tools=tools(),
        sampling=Sampling(max_new_tokens=900),
    )
    assert len(results) == 4
    for _, result in results:
        check_invariants(engine.tokenizer, result, max_new_tokens=900)
        assert result.finish_reason == "stop", result.error
        # Each withheld </think> got an end hint, three times; the fourth ends the thinking.
        assert [h.site for h in result.hints] == ["end"] * 3
        assert len(result.tool_calls) == 3, result.text
        assert result.text.endswith(END_OF_THINKING)
        assert result.text.count("</think>") == 1


@pytest.mark.vllm
def test_appended_hints_and_outputs_never_pass_the_token_budget(loop, engine):
    # End hints at every chance and outputs near the clip size: the loop must stop at the
    # budget instead of appending past it (a hint or output that does not fit ends with length).

    def steer(completion: str, real: Generation) -> str:
        return "\nprint('x' * 5000)\n```\n" if completion.endswith("```python") else "Done.</think>"

    config = HintConfig(conjunction_probability=0.0, end_repeats=8)
    for budget in (150, 400):
        results = collect(
            loop,
            Steered(engine, steer),
            jobs_for(engine.tokenizer, sample_problems(2, seed=22), hint_config=config),
            tools=tools(),
            sampling=Sampling(max_new_tokens=budget),
        )
        for _, result in results:
            check_invariants(engine.tokenizer, result, max_new_tokens=budget)
            assert result.finish_reason == "length"


@pytest.mark.vllm
def test_sampling_with_a_seed_is_reproducible(loop, engine):
    problem = sample_problems(1, seed=16)[0]
    prompt = chat_prompt(engine.tokenizer, problem.prompt, system=SYSTEM_PROMPT)

    async def once(seed):
        return await rollout(
            engine,
            prompt=prompt,
            problem=problem,
            hint_config=ALWAYS,
            tools=tools(),
            sampling=Sampling(max_new_tokens=300, temperature=1.0),
            rng=random.Random(seed),
        )

    async def twice():
        return await asyncio.gather(once(5), once(5))

    first, again = loop.run_until_complete(twice())
    assert first.text == again.text
    check_invariants(engine.tokenizer, first, max_new_tokens=300)


@pytest.mark.vllm
def test_a_prompt_longer_than_the_context_ends_without_an_engine_call(loop, engine):
    ids = engine.tokenizer.encode("What is 1 + 1? " * 400, add_special_tokens=False)
    assert len(ids) > MAX_MODEL_LEN
    result = loop.run_until_complete(rollout(engine, prompt_ids=ids, tools=tools()))
    assert result.finish_reason == "context_overflow"
    assert result.requests == [] and result.text == ""
    assert f"{len(ids)} tokens" in result.error


@pytest.mark.vllm
def test_the_token_budget_ends_with_length(loop, engine):
    problem = sample_problems(1, seed=17, kind="multi")[0]
    prompt = chat_prompt(engine.tokenizer, problem.prompt, system=SYSTEM_PROMPT)
    result = loop.run_until_complete(
        rollout(engine, prompt=prompt, tools=tools(), sampling=Sampling(max_new_tokens=40))
    )
    assert result.finish_reason == "length"
    assert result.generated_tokens <= 40
    check_invariants(engine.tokenizer, result, max_new_tokens=40)


class FaultyEngine:
    """Fault injection: the real engine, except that request number ``fail_at`` raises."""

    def __init__(self, engine, fail_at: int, error: Exception) -> None:
        self.engine, self.fail_at, self.error = engine, fail_at, error
        self.tokenizer, self.max_model_len = engine.tokenizer, engine.max_model_len
        self.calls = 0

    async def generate(self, prompt_ids, params) -> Generation:
        self.calls += 1
        if self.calls == self.fail_at:
            raise self.error
        return await self.engine.generate(prompt_ids, params)


@pytest.mark.vllm
def test_an_engine_error_ends_the_trajectory_and_keeps_its_text(loop, engine):
    problem = sample_problems(1, seed=18, kind="multi")[0]
    faulty = FaultyEngine(engine, fail_at=2, error=EngineError("server answered HTTP 500"))
    prompt = chat_prompt(engine.tokenizer, problem.prompt, system=SYSTEM_PROMPT)
    result = loop.run_until_complete(rollout(faulty, prompt=prompt, tools=tools()))
    assert result.finish_reason == "engine_error"
    assert result.error == "server answered HTTP 500"
    assert len(result.requests) == 1 and result.text  # the first turn is kept
    check_invariants(engine.tokenizer, result, max_new_tokens=Sampling().max_new_tokens)


@pytest.mark.vllm
def test_an_unavailable_engine_fails_run_many_fast(loop, engine):
    problems = sample_problems(6, seed=19)
    faulty = FaultyEngine(engine, fail_at=3, error=EngineUnavailable("engine server is down"))
    started = time.perf_counter()
    with pytest.raises(EngineUnavailable, match="down"):
        collect(loop, faulty, jobs_for(engine.tokenizer, problems), tools=tools(), concurrency=2)
    assert time.perf_counter() - started < 60


@pytest.mark.vllm
def test_run_many_bounds_concurrency_and_yields_every_job_once(loop, engine):
    in_flight = peak = 0

    class Counting:
        tokenizer, max_model_len = engine.tokenizer, engine.max_model_len

        async def generate(self, prompt_ids, params):
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                return await engine.generate(prompt_ids, params)
            finally:
                in_flight -= 1

    problems = sample_problems(7, seed=20, kind="multi")
    results = collect(
        loop,
        Counting(),
        jobs_for(engine.tokenizer, problems),
        tools=tools(),
        sampling=Sampling(max_new_tokens=200),
        concurrency=3,
    )
    assert sorted(job.key for job, _ in results) == list(range(7))
    assert peak <= 3


@pytest.mark.vllm
def test_cancelling_ends_trajectories_in_flight_with_cancelled(loop, engine):
    problems = sample_problems(3, seed=21, kind="multi")

    async def go():
        cancel = asyncio.Event()

        async def runner(code, **kwargs):
            cancel.set()  # the round is cancelled while the first cell runs
            return await sandbox.arun(code, **kwargs)

        return [
            result
            async for _, result in run_many(
                engine,
                jobs_for(engine.tokenizer, problems),
                tools=ToolConfig(runner=runner),
                cancel=cancel,
            )
        ]

    results = loop.run_until_complete(go())
    assert results and all(r.finish_reason == "cancelled" for r in results)


# -- the loop's logic on scripted text -----------------------------------------------------------


class ScriptedEngine:
    """A test double that replays one text per request, honouring stop strings as vLLM does
    (the earliest-ending stop string wins and is kept) and max_tokens (-> "length")."""

    def __init__(self, tokenizer, script: list[str], max_model_len: int = 4096) -> None:
        self.tokenizer, self.script, self.max_model_len = tokenizer, list(script), max_model_len
        self.prompts: list[list[int]] = []

    async def generate(self, prompt_ids, params) -> Generation:
        self.prompts.append(list(prompt_ids))
        text = self.script.pop(0) if self.script else ""
        return generation_from_text(self.tokenizer, text, params, len(prompt_ids))


@pytest.fixture(scope="module")
def tokenizer():
    from training.tiny import build_tokenizer

    return build_tokenizer(["<think>\nWait, print(1)\n```python\n```output\n</think>"] * 4)


def scripted(loop, tokenizer, script, **kwargs) -> tuple[RolloutResult, ScriptedEngine]:
    engine = ScriptedEngine(tokenizer, script)
    kwargs.setdefault("tools", tools())
    kwargs.setdefault("problem", ProblemSpec("math", "What is 2 + 3?", answer="5"))
    result = loop.run_until_complete(rollout(engine, prompt="Q: 2+3?\nA: ", **kwargs))
    budget = (kwargs.get("sampling") or Sampling()).max_new_tokens
    check_invariants(tokenizer, result, max_new_tokens=budget, max_model_len=engine.max_model_len)
    return result, engine


def test_a_conjunction_hint_follows_the_conjunction_up_to_the_cap(loop, tokenizer):
    script = [
        "<think>\nIt might be 6. Wait",
        "\nprint(2 + 3)\n```\n",
        "So 5. Wait, let me see. Wait no.\n</think>\n\n\\boxed{5}",  # the cap (1) is spent
    ]
    config = HintConfig(conjunction_probability=1.0, max_hints=1, end_of_thinking=False)
    result, engine = scripted(loop, tokenizer, script, hint_config=config)
    (hint,) = result.hints
    assert hint.site == "conjunction"
    assert result.text[: hint.start].endswith("It might be 6. Wait, ")
    assert result.tool_calls[0].output == "5"
    assert result.text.endswith("Wait, let me see. Wait no.\n</think>\n\n\\boxed{5}")
    assert result.finish_reason == "stop" and len(engine.prompts) == 3
    # Every resume re-sends the previous prompt exactly, plus what came after.
    for before, after in zip(engine.prompts, engine.prompts[1:], strict=False):
        assert after[: len(before)] == before


def test_no_hint_inside_a_code_block_or_after_thinking(loop, tokenizer):
    script = [
        "<think>\nLet me check.\n```python\n# Wait",
        " for it\nprint(1)\n```\n",
        "Done.\n</think>\nWait",
        ", the answer is \\boxed{1}",
    ]
    config = HintConfig(conjunction_probability=1.0, end_of_thinking=False)
    result, _ = scripted(loop, tokenizer, script, hint_config=config)
    assert result.hints == []
    assert [c.output for c in result.tool_calls] == ["1"]


def test_eos_before_the_end_of_thinking_gets_an_end_hint(loop, tokenizer):
    script = ["<think>\nProbably 6.\n", "\nprint(2 + 3)\n```\n", "So 5.\n</think> \\boxed{5}"]
    config = HintConfig(conjunction_probability=0.0, end_repeats=1)
    result, _ = scripted(loop, tokenizer, script, hint_config=config)
    (hint,) = result.hints
    assert hint.site == "end" and hint.start == len("<think>\nProbably 6.\n")
    assert result.tool_calls[0].output == "5"


def test_a_code_block_that_never_closes_ends_with_length(loop, tokenizer):
    script = ["<think>\n```python\n" + "x = 1\n" * 400]
    result, _ = scripted(loop, tokenizer, script, sampling=Sampling(max_new_tokens=100))
    assert result.finish_reason == "length" and result.tool_calls == []


def test_a_model_written_output_fence_is_cut_and_its_code_run(loop, tokenizer):
    script = [
        "<think>\n```python\nprint(7 * 6)\n```output\n42\n```\n",
        "Right.\n</think> \\boxed{42}",
    ]
    result, _ = scripted(loop, tokenizer, script)
    assert result.text.startswith("<think>\n```python\nprint(7 * 6)\n```\n```output\n42\n```\n")
    assert [c.output for c in result.tool_calls] == ["42"]


def test_a_model_that_keeps_writing_output_fences_is_stopped(loop, tokenizer):
    result, _ = scripted(loop, tokenizer, ["```output"] * 5)
    assert result.finish_reason == "stop"
    assert "```output" in result.error


def test_a_failing_tool_runner_ends_with_tool_error(loop, tokenizer):
    async def broken(code, **kwargs):
        raise OSError("sandbox pool is gone")

    script = ["<think>\n```python\nprint(1)\n```\n"]
    result, _ = scripted(loop, tokenizer, script, tools=ToolConfig(runner=broken))
    assert result.finish_reason == "tool_error"
    assert "sandbox pool is gone" in result.error


def test_notebook_mode_runs_a_trajectorys_cells_in_one_session(loop, tokenizer):
    script = [
        "<think>\n```python\nx = 20\nprint(x)\n```\n",
        "Then\n```python\nprint(x + 1)\n```\n",
        "</think> \\boxed{21}",
    ]
    result, _ = scripted(loop, tokenizer, script, tools=tools(notebook=True))
    assert [c.output for c in result.tool_calls] == ["20", "21"]
    plain, _ = scripted(loop, tokenizer, script)
    assert "NameError" in plain.tool_calls[1].output


def test_an_empty_hint_list_is_refused_before_any_request(loop, tokenizer):
    engine = ScriptedEngine(tokenizer, ["unused"])
    with pytest.raises(ValueError, match="names no hints"):
        loop.run_until_complete(rollout(engine, prompt="Q", hint_config=HintConfig(hints=())))
    assert engine.prompts == []


def test_align_ids_drops_tokens_past_the_text_and_tokenizes_the_rest(tokenizer):
    ids = tokenizer.encode("```python\nprint(1)\n```\n```output", add_special_tokens=False)
    text = "```python\nprint(1)\n```\n"
    aligned = align_ids(tokenizer, ids, text)
    assert tokenizer.decode(aligned) == text
    assert aligned[:3] == ids[:3]
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert align_ids(tokenizer, [*aligned, eos], text) == aligned


# Adversarial continuations: every stop the loop acts on, again and again.
ADVERSARIAL = [
    "Wait",
    "\n```python\nprint('x' * 9000)\n```\n",  # an output at the clip size
    "</think>",  # an end hint at every chance
    "```output",  # a model-written output fence
    "```python\nprint(1)\n```output",  # one fused into its cell's closing fence
    "and so on " * 30,
    "",  # EOS while thinking
]


async def _clip_size_output(code, **kwargs):
    return sandbox.Execution(stdout="y" * 20_000, stderr="", exit_code=0, reason=None,
                             wall_s=0.0, cpu_s=0.0)  # fmt: skip


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    script=st.lists(st.sampled_from(ADVERSARIAL), min_size=1, max_size=40),
    max_new_tokens=st.integers(1, 700),
    max_model_len=st.integers(40, 900),
    max_calls=st.integers(0, 8),
    hint_config=st.builds(
        HintConfig,
        conjunction_probability=st.sampled_from([0.0, 0.5, 1.0]),
        max_hints=st.integers(0, 6),
        end_repeats=st.integers(0, 6),
    ),
)
def test_no_continuation_takes_a_trajectory_past_its_budget(
    loop, tokenizer, script, max_new_tokens, max_model_len, max_calls, hint_config
):
    engine = ScriptedEngine(tokenizer, script, max_model_len=max_model_len)
    result = loop.run_until_complete(
        rollout(
            engine,
            prompt="Q: 2+3?\nA: ",
            problem=ProblemSpec("math", "What is 2 + 3?", answer="5"),
            hint_config=hint_config,
            tools=ToolConfig(runner=_clip_size_output, max_calls=max_calls),
            sampling=Sampling(max_new_tokens=max_new_tokens),
            rng=random.Random(0),
        )
    )
    check_invariants(tokenizer, result, max_new_tokens=max_new_tokens, max_model_len=max_model_len)
    for request in result.requests:
        assert request.prompt_tokens < max_model_len


@pytest.mark.vllm
def test_a_round_s_own_hint_library_is_what_the_rollout_inserts(loop, engine):
    # A hint added in the admin (snapshotted into the round's config at launch) is inserted
    # verbatim; the built-in ones it does not name are never used.
    added = Hint("check_by_program", "math", "Let me make sure with a short program.```python")
    config = HintConfig(
        hints=("check_by_program",),
        library=(added, *HINTS),
        conjunction_probability=0.0,
        end_repeats=1,
    )
    results = collect(
        loop,
        Steered(engine, steer_to_end_of_thinking),
        jobs_for(engine.tokenizer, sample_problems(3, seed=23), hint_config=config),
        tools=tools(),
        sampling=Sampling(max_new_tokens=600),
    )
    for _, result in results:
        check_invariants(engine.tokenizer, result, max_new_tokens=600)
        assert [(h.name, h.text) for h in result.hints] == [(added.name, added.text)]


def test_a_conjunction_matched_inside_a_longer_word_gets_no_hint(loop, tokenizer):
    # vLLM matches stop strings on text: "Wait" stops inside a token that reads "Waiting", cuts
    # the text there and keeps the whole token's id. The word goes on: no hint, nothing cut.
    class StopsInsideAWord(ScriptedEngine):
        async def generate(self, prompt_ids, params):
            if not self.prompts:
                self.prompts.append(list(prompt_ids))
                written = "<think>\nWaiting"
                ids = self.tokenizer.encode(written, add_special_tokens=False)
                return Generation("<think>\nWait", ids, "stop", "Wait", len(prompt_ids), 0, 0.0)
            return await super().generate(prompt_ids, params)

    engine = StopsInsideAWord(tokenizer, [" is over. Wait", ", so 5.\n</think> \\boxed{5}"])
    config = HintConfig(conjunction_probability=1.0, max_hints=1, end_of_thinking=False)
    result = loop.run_until_complete(
        rollout(engine, prompt="Q: 2+3?\nA: ", hint_config=config, tools=tools())
    )
    check_invariants(tokenizer, result, max_new_tokens=4096, max_model_len=4096)
    assert result.text.startswith("<think>\nWaiting is over. Wait, ")
    (hint,) = result.hints  # the real "Wait" got it
    assert result.text[: hint.start].endswith("Waiting is over. Wait, ")


def test_plain_samples_run_no_code_when_only_hinted_samples_may(loop, tokenizer):
    # The paper's greedy base in a seed round: a baseline sample's code is text, nothing runs it.
    script = ["<think>\n```python\nprint(2 + 3)\n```\nSo 5.\n</think> \\boxed{5}"]
    plain, engine = scripted(loop, tokenizer, script, tools=tools(plain_samples=False))
    assert plain.tool_calls == [] and "```output" not in plain.text and len(engine.prompts) == 1
    script = ["<think>\n```python\nprint(2 + 3)\n```\n", "So 5.\n</think> \\boxed{5}"]
    config = HintConfig(conjunction_probability=0.0, end_of_thinking=False)
    hinted, _ = scripted(
        loop, tokenizer, script, tools=tools(plain_samples=False), hint_config=config
    )
    assert [c.output for c in hinted.tool_calls] == ["5"]


# -- conjunction stops drawn before the request, counted in the engine ---------------------------


class WritesOneText:
    """A test double for a model that writes one fixed text whatever the requests: each request
    goes on where the trajectory left it (after a hint, it writes a cell). Token by token as
    vLLM does: a stop string ends the request at the token that completes it (text cut after
    it, the token kept); with ``hint_stops``, the engine's conjunction watch (the code its
    logits processor runs) ends it with an end-of-sequence token after the drawn conjunction."""

    CELL = "\nprint(1)\n```\n"

    def __init__(self, tokenizer, text: str, *, hint_stops: bool) -> None:
        self.tokenizer, self.text, self.hint_stops = tokenizer, text, hint_stops
        self.max_model_len = 1 << 20
        self.pos = 0  # how much of the text the trajectory holds
        self.hinted_at: list[int] = []  # where in the text each hint went

    async def generate(self, prompt_ids, params) -> Generation:
        after_hint = self.tokenizer.decode(prompt_ids[-4:]).endswith("```python")
        if after_hint:
            self.hinted_at.append(self.pos)
        ids = self.tokenizer.encode(self.CELL if after_hint else self.text[self.pos :])
        ids = ids[: params.max_tokens]
        watch = None
        if params.hint_stops is not None:
            watch = ConjunctionWatch(self.tokenizer, params.hint_stops, prompt_ids)
        eos = self.tokenizer.eos_token_id
        text = ""
        for i, token in enumerate(ids):
            before, text = len(text), text + self.tokenizer.decode([token])
            hits = [(text.find(s, max(0, before - len(s) + 1)), s) for s in params.stop]
            hits = [(at + len(s), s) for at, s in hits if at >= 0]
            if hits:
                end, stop = min(hits)
                # The rollout keeps a word that runs on past a conjunction in the same token.
                runs_on = stop in HintConfig().conjunctions and text[end : end + 1].isalnum()
                self._wrote(after_hint, len(text) if runs_on else end)
                return Generation(text[:end], ids[: i + 1], "stop", stop, len(prompt_ids), 0, 0.0)
            if watch is not None and watch.feed(token) is not None:
                self._wrote(after_hint, len(text))
                return Generation(text, [*ids[: i + 1], eos], "stop", None, len(prompt_ids), 0, 0.0)
        self._wrote(after_hint, len(text))
        return Generation(text, [*ids, eos], "stop", None, len(prompt_ids), 0, 0.0)

    def _wrote(self, after_hint: bool, chars: int) -> None:
        if not after_hint:
            self.pos += chars


# Eligible conjunctions: one, two, three, ..., seven (and "Wait" before "ing" when the tokenizer
# ends a token there); not the one in code, "xWait", nor those after the end of thinking.
CONJUNCTIONS_TEXT = (
    "<think>\nFirst. Wait, one. Alternatively, two.\n```python\n# Wait, not in code\nprint(2)\n"
    "```\nWaiting is a word. xWait is none. Wait, three. Wait, four. Wait, five. Alternatively,"
    " six. Wait, seven.\n</think>\nWait, not after thinking. \\boxed{1}"
)


async def _fixed_output(code, **kwargs):
    return sandbox.Execution(stdout="2", stderr="", exit_code=0, reason=None,
                             wall_s=0.0, cpu_s=0.0)  # fmt: skip


def hint_positions(loop, tokenizer, *, hint_stops, probability, max_hints, seed):
    engine = WritesOneText(tokenizer, CONJUNCTIONS_TEXT, hint_stops=hint_stops)
    config = HintConfig(
        conjunction_probability=probability, max_hints=max_hints, end_of_thinking=False
    )
    result = loop.run_until_complete(
        rollout(
            engine,
            prompt="Q: 2+3?\nA: ",
            problem=ProblemSpec("math", "What is 2 + 3?", answer="5"),
            hint_config=config,
            tools=ToolConfig(runner=_fixed_output, max_calls=20),
            rng=random.Random(seed),
        )
    )
    check_invariants(tokenizer, result, max_new_tokens=4096, max_model_len=engine.max_model_len)
    assert result.finish_reason == "stop", result.error
    assert [h.start for h in result.hints] == [
        result.text.index(h.text, h.start) for h in result.hints
    ]
    return tuple(engine.hinted_at), result


def eligible_conjunctions(loop, tokenizer, *, hint_stops: bool) -> tuple[int, ...]:
    """Where hints go when every eligible conjunction gets one."""
    return hint_positions(
        loop, tokenizer, hint_stops=hint_stops, probability=1.0, max_hints=9, seed=0
    )[0]


def test_the_engine_stops_only_at_the_conjunctions_that_get_a_hint(loop, tokenizer):
    # Hints at every eligible conjunction: the same places whether the engine stops at each
    # conjunction (a coin each) or ends the request after the drawn one.
    eligible = eligible_conjunctions(loop, tokenizer, hint_stops=True)
    assert eligible == eligible_conjunctions(loop, tokenizer, hint_stops=False)
    assert len(eligible) >= 7
    # At p = 0.5 no request ends at a conjunction that gets no hint.
    for seed in range(20):
        _, result = hint_positions(
            loop, tokenizer, hint_stops=True, probability=0.5, max_hints=9, seed=seed
        )
        ended_by_the_engine = [r for r in result.requests if r.stop_reason is None]
        assert len(ended_by_the_engine) == len(result.hints) + 1  # and the end of the text
        assert all(r.stop_reason not in HintConfig().conjunctions for r in result.requests)


def test_drawn_conjunction_stops_place_hints_as_a_coin_at_each_conjunction(loop, tokenizer):
    # Sampling: with p = 0.5 and at most 2 hints, the j-th eligible conjunction gets a hint
    # with probability j / 2**j (a fair coin at each until two came up), both ways.
    eligible = eligible_conjunctions(loop, tokenizer, hint_stops=True)
    n = 400
    for hint_stops in (False, True):
        hinted = Counter()
        for seed in range(n):
            positions, _ = hint_positions(
                loop, tokenizer, hint_stops=hint_stops, probability=0.5, max_hints=2, seed=seed
            )
            assert set(positions) <= set(eligible) and len(positions) <= 2
            hinted.update(positions)
        for j, position in enumerate(eligible, start=1):
            assert abs(hinted[position] / n - j / 2**j) < 0.08, (hint_stops, j, hinted)


@pytest.mark.vllm
def test_the_engine_ends_a_request_right_after_the_drawn_conjunction(loop, engine):
    # The prefix the tiny policy learnt to follow with "Wait, " (a conjunction hint's place);
    # sampled, so that some continuations hold one conjunction or more.
    tokenizer = engine.tokenizer
    problem = sample_problems(1, seed=24)[0]
    prefix = "<think>\nI need 37 * 48. It might be 1700. "
    prompt = tokenizer.encode(
        chat_prompt(tokenizer, problem.prompt, system=SYSTEM_PROMPT) + prefix,
        add_special_tokens=False,
    )

    async def go(stops):
        params = GenerationParams(max_tokens=200, temperature=1.0, hint_stops=stops)
        return [await engine.generate(prompt, replace(params, seed=seed)) for seed in range(12)]

    ended_after = 0
    for skips in (0, 1):
        stops = HintStops(("Wait", "Alternatively"), skips, prefix[-8:])
        for generation in loop.run_until_complete(go(stops)):
            found = hinted_conjunction_end(tokenizer, stops, prompt, generation.token_ids)
            if found is not None:
                ended_after += 1
                text, end = found
                assert text[:end].endswith(("Wait", "Alternatively"))
                assert generation.token_ids[-1] == tokenizer.eos_token_id
                assert generation.finish_reason == "stop" and generation.stop_reason is None
            else:  # the model went past no drawn conjunction: the watch never fired
                watch = ConjunctionWatch(tokenizer, stops, prompt)
                assert all(watch.feed(t) is None for t in generation.token_ids), generation.text
    assert ended_after >= 3
