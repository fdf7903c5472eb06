"""`OpenAIGenerator`: any OpenAI-compatible chat endpoint as a `ChatGenerator`, for evaluation.

Retries with exponential backoff on 408/409/429/5xx and connection errors come from the `openai`
client (honouring `Retry-After`); requests run concurrently up to `max_concurrency`. The API key is
read from an environment variable and never stored in anything that is printed or logged.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from turngym.agent.generator import Completion, SamplingParams


class EndpointError(RuntimeError):
    """The endpoint could not be reached, or kept failing after the retries; the message names the URL."""


class EndpointAuthError(EndpointError):
    """The endpoint rejected the API key (HTTP 401/403), or no key was set."""


class OpenAIGenerator:
    """Chat completions from an OpenAI-compatible endpoint (OpenAI, vLLM's server, ...).

    Args:
        model: the model name the endpoint serves.
        base_url: the API root, e.g. `http://127.0.0.1:8000/v1`.
        api_key_env: the environment variable that holds the API key; None for endpoints without
            authentication.
        max_concurrency: requests in flight at once.
        max_retries: retries per request on rate limits (429), server errors (5xx) and timeouts.
        timeout: seconds per request attempt.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str = "https://api.openai.com/v1",
        api_key_env: str | None = "OPENAI_API_KEY",
        max_concurrency: int = 8,
        max_retries: int = 5,
        timeout: float = 120.0,
    ) -> None:
        import openai

        if api_key_env is not None and not os.environ.get(api_key_env):
            raise EndpointAuthError(
                f"no API key for {base_url}: set the environment variable {api_key_env}, "
                "or pass api_key_env=None (CLI: --no-api-key) for a server without authentication"
            )
        self.model, self.base_url, self.api_key_env = model, base_url, api_key_env
        self.max_concurrency, self.max_retries = max_concurrency, max_retries
        api_key = os.environ[api_key_env] if api_key_env else "none"
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=max_retries, timeout=timeout)

    @property
    def _attempts(self) -> str:
        return f"after {self.max_retries + 1} attempts" if self.max_retries else "after 1 attempt"

    def __repr__(self) -> str:
        return f"OpenAIGenerator(model={self.model!r}, base_url={self.base_url!r}, api_key_env={self.api_key_env!r})"

    def chat(self, conversations: Sequence[Sequence[dict[str, str]]], sampling: SamplingParams) -> list[Completion]:
        """One completion per conversation, requested concurrently (see `ChatGenerator`)."""
        seeds = [None if sampling.seed is None else sampling.seed + i for i in range(len(conversations))]
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            return list(pool.map(lambda args: self._complete(*args, sampling), zip(conversations, seeds, strict=True)))

    def _complete(self, messages: Sequence[dict[str, str]], seed: int | None, sampling: SamplingParams) -> Completion:
        import openai

        request: dict[str, Any] = dict(
            model=self.model,
            messages=list(messages),
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
        )
        if sampling.stop:
            request["stop"] = list(sampling.stop)
        if seed is not None:
            request["seed"] = seed
        try:
            response = self._client.chat.completions.create(**request)
        except (openai.AuthenticationError, openai.PermissionDeniedError) as err:
            who = f"the key in ${self.api_key_env}" if self.api_key_env else "no API key"
            raise EndpointAuthError(
                f"{self.base_url} rejected the request (HTTP {err.status_code}): check {who}"
            ) from None  # the original carries request details; the message says what to fix
        except openai.APITimeoutError:
            raise EndpointError(
                f"{self.base_url} did not answer within {self._client.timeout} s, {self._attempts}"
            ) from None
        except openai.APIConnectionError as err:
            reason = _first_line(err.__cause__ or err)
            raise EndpointError(
                f"cannot reach {self.base_url} ({reason}), {self._attempts}; is the server running?"
            ) from None
        except openai.APIStatusError as err:
            retried = f", {self._attempts}" if err.status_code in (408, 409, 429) or err.status_code >= 500 else ""
            raise EndpointError(
                f"{self.base_url} answered HTTP {err.status_code} for model {self.model!r}{retried}: {_first_line(err)}"
            ) from None
        if not response.choices:
            raise EndpointError(f"{self.base_url} returned no choices for model {self.model!r}")
        choice = response.choices[0]
        finish = "length" if choice.finish_reason == "length" else "stop"
        return Completion(token_ids=[], logprobs=[], finish_reason=finish, text=choice.message.content or "")


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return (lines[0] if lines else type(err).__name__)[:300]
