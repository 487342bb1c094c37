"""One-line hooks for the two things a product tracks: LLM tokens and playbook runs."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

if TYPE_CHECKING:
    from billing_kernel_sdk._delivery import Delivery

logger = logging.getLogger("billing_kernel_sdk")

TOKENS = "tokens"
PLAYBOOK_RUNS = "playbook_runs"

P = ParamSpec("P")
R = TypeVar("R")
C = TypeVar("C")

_ANTHROPIC_PARTS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)
_OPENAI_PARTS = ("prompt_tokens", "completion_tokens")


def _field(source: Any, name: str) -> Any:
    if isinstance(source, dict):
        return source.get(name)
    return getattr(source, name, None)


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def llm_tokens(response: Any) -> int | None:
    """The tokens a model call used, from its response (object or dict), or None.

    Reads OpenAI-compatible chat completions and their final streaming chunk
    (`usage.total_tokens`, else prompt + completion), the Responses API (`usage.total_tokens`,
    else input + output, also inside a `response.completed` stream event), and Anthropic-style
    usage (input + output + cache creation + cache reads).
    """
    usage = _field(response, "usage")
    if usage is None and _field(response, "response") is not None:
        usage = _field(_field(response, "response"), "usage")
    if usage is None:
        return None
    total = _whole(_field(usage, "total_tokens"))
    if total is not None:
        return total
    for names in (_ANTHROPIC_PARTS, _OPENAI_PARTS):
        parts = [_whole(_field(usage, name)) for name in names]
        if any(part is not None for part in parts):
            return sum(part or 0 for part in parts)
    return None


def llm_created_at(response: Any) -> datetime | None:
    """When the provider made the response (OpenAI's `created`, the Responses API's
    `created_at`, in Unix seconds), or None: the same for every copy of one response."""
    source = response
    if _field(response, "created") is None and _field(response, "response") is not None:
        source = _field(response, "response")
    for name in ("created", "created_at"):
        value = _field(source, name)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            try:
                return datetime.fromtimestamp(value, UTC)
            except (OverflowError, OSError, ValueError):
                return None
    return None


def _call_arguments(function: Callable[..., Any], args: Any, kwargs: Any) -> dict[str, Any]:
    bound = inspect.signature(function).bind_partial(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


class TrackingHelpers:
    """Methods both trackers get: they all end in `track()`, so they never raise either."""

    track: Callable[..., None]
    _core: Delivery
    _admits_sync = True
    """Whether `tracks_run` may gate a sync function (not on the async tracker)."""

    def track_llm_usage(
        self,
        org_id: str,
        response: Any,
        *,
        idempotency_key: str | None = None,
        occurred_at: datetime | None = None,
    ) -> None:
        """Track the tokens of a model response. A response with an `id` is keyed by it, and
        its time is the provider's (`created`), or observed (when this tracker saw it; not
        compared by the kernel): tracking the same response twice, from any process, sends
        the same event, which the kernel counts once. A response that reports no usage is
        skipped (one debug line)."""
        try:
            tokens = llm_tokens(response)
            if tokens is None:
                self._core.ledger.count("skipped")
                logger.debug(
                    "LLM response without usage data for org %r: no tokens tracked "
                    "(for a stream, ask for usage in the final chunk)",
                    org_id,
                )
                return
            response_id = _field(response, "id")
            if idempotency_key is None and isinstance(response_id, str) and response_id:
                idempotency_key = f"llm:{response_id}"[:255]
                if occurred_at is None:
                    occurred_at = llm_created_at(response)
            self.track(
                org_id, TOKENS, tokens, idempotency_key=idempotency_key, occurred_at=occurred_at
            )
        except Exception:  # reading an odd response object must not fail the product
            self._core.ledger.count("skipped")
            logger.debug("could not read usage from an LLM response", exc_info=True)

    def track_llm_stream(self, org_id: str, chunks: Iterable[C]) -> Iterator[C]:
        """Pass a streamed response through, tracking the usage its final chunk reports
        (OpenAI: `stream_options={"include_usage": True}`)."""
        last_with_usage: Any = None
        for chunk in chunks:
            if llm_tokens(chunk) is not None:
                last_with_usage = chunk
            yield chunk
        if last_with_usage is not None:
            self.track_llm_usage(org_id, last_with_usage)

    async def track_llm_astream(self, org_id: str, chunks: AsyncIterable[C]) -> AsyncIterator[C]:
        """`track_llm_stream` for async streams."""
        last_with_usage: Any = None
        async for chunk in chunks:
            if llm_tokens(chunk) is not None:
                last_with_usage = chunk
            yield chunk
        if last_with_usage is not None:
            self.track_llm_usage(org_id, last_with_usage)

    def tracks_llm_usage(
        self, org_param: str = "org_id"
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorate a function (sync or async) that returns a model response: its tokens are
        tracked for the org passed in the argument named `org_param`."""

        def decorate(function: Callable[P, R]) -> Callable[P, R]:
            if inspect.iscoroutinefunction(function):

                @functools.wraps(function)
                async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                    response = await function(*args, **kwargs)
                    org_id = _call_arguments(function, args, kwargs).get(org_param)
                    self.track_llm_usage(org_id, response)  # type: ignore[arg-type]
                    return response

                return async_wrapper  # type: ignore[return-value]

            @functools.wraps(function)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                response = function(*args, **kwargs)
                org_id = _call_arguments(function, args, kwargs).get(org_param)
                self.track_llm_usage(org_id, response)  # type: ignore[arg-type]
                return response

            return wrapper

        return decorate

    def tracks_run(
        self, org_param: str = "org_id", run_param: str = "run_id"
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorate a function that executes a run: each call is admitted as `run()` admits
        a run (one playbook run consumed, keyed by the run id; QuotaExceeded instead of the
        call when refused), for the org and run id in the named arguments. The async
        tracker decorates async functions only: its decision is awaited."""

        def decorate(function: Callable[P, R]) -> Callable[P, R]:
            def ids(args: Any, kwargs: Any) -> tuple[Any, Any]:
                arguments = _call_arguments(function, args, kwargs)
                return arguments.get(org_param), arguments.get(run_param)

            if inspect.iscoroutinefunction(function):

                @functools.wraps(function)
                async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                    await self._admit_run_async(*ids(args, kwargs))
                    return await function(*args, **kwargs)

                return async_wrapper  # type: ignore[return-value]

            if not self._admits_sync:
                raise TypeError(
                    "the async tracker gates runs with an awaited decision: decorate an "
                    "async function (or use UsageTracker for a sync one)"
                )

            @functools.wraps(function)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                self._admit_run(*ids(args, kwargs))
                return function(*args, **kwargs)

            return wrapper

        return decorate

    def _admit_run(self, org_id: Any, run_id: Any) -> object:
        """Consume one playbook run, or raise QuotaExceeded (the trackers' own)."""
        raise NotImplementedError

    async def _admit_run_async(self, org_id: Any, run_id: Any) -> object:
        raise NotImplementedError
