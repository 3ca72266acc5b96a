"""Any OpenAI-compatible ``/v1/completions`` server; vLLM's in production.

Prompts go out as token ids (the completions API accepts a list of ints). vLLM returns the new
token ids with ``return_token_ids`` and the prefix-cache hits in
``usage.prompt_tokens_details.cached_tokens`` when started with ``--enable-prompt-tokens-details``
(``server_main`` does); other servers get the text re-tokenized here and no cache figure.
The tokenizer is loaded locally from ``config.tokenizer`` or ``config.model``.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from workers.engines.base import (
    EngineConfig,
    EngineError,
    EngineTimeout,
    EngineUnavailable,
    Generation,
    GenerationParams,
)


class ServerEngine:
    """An ``Engine`` that sends each turn to an OpenAI-compatible completions endpoint."""

    def __init__(self, config: EngineConfig, *, tokenizer: Any = None) -> None:
        self.config = config
        self.name = config.model
        if len(config.base_urls) != 1:
            raise ValueError(f"a ServerEngine talks to one address, got {list(config.base_urls)}")
        self.base_url = config.base_urls[0].rstrip("/")
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(config.tokenizer or config.model)
        self.tokenizer = tokenizer
        self.max_model_len = config.max_model_len
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(config.request_timeout_s, connect=config.connect_timeout_s),
            # One connection per in-flight trajectory; the server batches them.
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=256),
        )

    async def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        url = f"{self.base_url}{path}"
        try:
            response = await self._client.request(method, url, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise EngineUnavailable(f"engine server {self.base_url} is unreachable: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise EngineTimeout(
                f"engine server {self.base_url} timed out after "
                f"{self.config.request_timeout_s:g} s ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:  # the connection broke: the server went away
            raise EngineUnavailable(
                f"engine server {self.base_url} dropped the connection: {type(exc).__name__}: {exc}"
            ) from exc
        except httpx.HTTPError as exc:
            raise EngineError(f"engine server {url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            body = response.text[:500]
            error = EngineUnavailable if response.status_code in (502, 503, 504) else EngineError
            raise error(f"engine server {url} answered HTTP {response.status_code}: {body}")
        try:
            return response.json()
        except ValueError as exc:
            raise EngineError(f"engine server {url} sent invalid JSON: {exc}") from exc

    async def check(self) -> None:
        """Reach ``/models`` and check the configured model is served there."""
        payload = await self._request("GET", "/models")
        served = {m.get("id"): m for m in payload.get("data", [])}
        if self.name not in served:
            raise EngineUnavailable(
                f"engine server {self.base_url} does not serve {self.name!r} "
                f"(it serves {sorted(served)})"
            )
        # vLLM reports its context length; keep the smaller of it and the configured one.
        served_len = served[self.name].get("max_model_len")
        if isinstance(served_len, int):
            self.max_model_len = min(self.max_model_len, served_len)

    async def generate(self, prompt_ids: list[int], params: GenerationParams) -> Generation:
        body: dict[str, Any] = {
            "model": self.name,
            "prompt": list(prompt_ids),
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stop": list(params.stop),
            "include_stop_str_in_output": True,
            "return_token_ids": True,
        }
        if params.seed is not None:
            body["seed"] = params.seed
        if params.min_tokens or params.ignore_eos:  # vLLM extensions
            body.update(min_tokens=params.min_tokens, ignore_eos=params.ignore_eos)
        started = time.perf_counter()
        payload = await self._request("POST", "/completions", json=body)
        wall_s = time.perf_counter() - started
        try:
            choice = payload["choices"][0]
            text = choice["text"]
        except (KeyError, IndexError, TypeError) as exc:
            raise EngineError(
                f"engine server sent an unexpected completion: {payload!r:.300}"
            ) from exc
        token_ids = choice.get("token_ids")
        if token_ids is None:
            token_ids = self.tokenizer.encode(text, add_special_tokens=False)
        usage = payload.get("usage") or {}
        details = usage.get("prompt_tokens_details") or {}
        return Generation(
            text=text,
            token_ids=list(token_ids),
            finish_reason=choice.get("finish_reason") or "abort",
            stop_reason=choice.get("stop_reason"),
            prompt_tokens=usage.get("prompt_tokens", len(prompt_ids)),
            cached_tokens=details.get("cached_tokens"),
            wall_s=wall_s,
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> ServerEngine:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
