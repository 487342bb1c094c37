"""The LLM and run hooks, with the real `openai` client talking to a local server that
answers like the API."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import openai
import pytest

from billing_kernel_sdk import UsageTracker, llm_tokens
from tests.fakes import FakeKernel, FakeTransport

CHAT = {
    "id": "chatcmpl-abc",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "m",
    "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hello"}}
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42},
}
RESPONSE = {
    "id": "resp_abc",
    "object": "response",
    "created_at": 1_700_000_000,
    "model": "m",
    "status": "completed",
    "output": [],
    "parallel_tool_calls": True,
    "tool_choice": "auto",
    "tools": [],
    "usage": {
        "input_tokens": 100,
        "output_tokens": 23,
        "total_tokens": 123,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    },
}


def chunk(content: str | None, usage: dict[str, int] | None = None) -> dict[str, Any]:
    choices = (
        []
        if content is None
        else [{"index": 0, "delta": {"content": content}, "finish_reason": None}]
    )
    return {
        "id": "chatcmpl-stream",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": choices,
        "usage": usage,
    }


class FakeOpenAI(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path.endswith("/responses"):
            self._json(RESPONSE)
        elif body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            final_usage = {"prompt_tokens": 8, "completion_tokens": 9, "total_tokens": 17}
            for part in (chunk("Hel"), chunk("lo"), chunk(None, final_usage)):
                self.wfile.write(f"data: {json.dumps(part)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
        else:
            self._json(CHAT)

    def _json(self, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def openai_client() -> Iterator[openai.OpenAI]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield openai.OpenAI(
        base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", api_key="sk-test", max_retries=0
    )
    server.shutdown()


@pytest.fixture
def kernel_and_tracker() -> Iterator[tuple[FakeKernel, UsageTracker]]:
    kernel = FakeKernel()
    tracker = UsageTracker(transport=FakeTransport(kernel), max_delay=0.01)
    yield kernel, tracker
    tracker.close(5)


def test_tokens_of_a_chat_completion_count_once_per_response(
    openai_client: openai.OpenAI, kernel_and_tracker: tuple[FakeKernel, UsageTracker]
) -> None:
    kernel, tracker = kernel_and_tracker
    completion = openai_client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}]
    )
    tracker.track_llm_usage("acme", completion)
    tracker.track_llm_usage("acme", completion)  # the same response again: keyed by its id
    assert tracker.flush(5)
    assert kernel.totals() == {"acme": 42}
    assert [e["idempotency_key"] for e in kernel.seen.values()] == ["llm:chatcmpl-abc"]


def test_tokens_of_a_stream_come_from_its_final_chunk(
    openai_client: openai.OpenAI, kernel_and_tracker: tuple[FakeKernel, UsageTracker]
) -> None:
    kernel, tracker = kernel_and_tracker
    stream = openai_client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text = "".join(
        c.choices[0].delta.content or ""
        for c in tracker.track_llm_stream("acme", stream)
        if c.choices
    )
    assert text == "Hello"
    assert tracker.flush(5)
    assert kernel.totals() == {"acme": 17}


def test_tokens_of_a_responses_api_call_via_the_decorator(
    openai_client: openai.OpenAI, kernel_and_tracker: tuple[FakeKernel, UsageTracker]
) -> None:
    kernel, tracker = kernel_and_tracker

    @tracker.tracks_llm_usage(org_param="org")
    def answer(org: str, question: str) -> Any:
        return openai_client.responses.create(model="m", input=question)

    assert answer("beta", "why?").id == "resp_abc"
    assert tracker.flush(5)
    assert kernel.totals() == {"beta": 123}


@pytest.mark.parametrize(
    ("response", "tokens"),
    [
        ({"usage": {"input_tokens": 10, "output_tokens": 5}}, 15),  # Anthropic
        (
            {
                "usage": {
                    "input_tokens": 10,
                    "output_tokens": 5,
                    "cache_read_input_tokens": 100,
                    "cache_creation_input_tokens": 20,
                }
            },
            135,
        ),
        (SimpleNamespace(usage=SimpleNamespace(prompt_tokens=3, completion_tokens=4)), 7),
        ({"type": "response.completed", "response": {"usage": {"total_tokens": 9}}}, 9),
        ({"usage": None}, None),
        ({"choices": []}, None),
        ("not a response", None),
    ],
)
def test_llm_tokens_reads_the_usual_shapes(response: Any, tokens: int | None) -> None:
    assert llm_tokens(response) == tokens


def test_a_response_without_usage_is_skipped_with_one_debug_line(
    kernel_and_tracker: tuple[FakeKernel, UsageTracker], caplog: pytest.LogCaptureFixture
) -> None:
    _, tracker = kernel_and_tracker
    with caplog.at_level(logging.DEBUG, logger="billing_kernel_sdk"):
        tracker.track_llm_usage("acme", object())
        tracker.track_llm_usage("acme", {"id": "chatcmpl-1", "usage": None})
    stats = tracker.stats()
    assert (stats.skipped, stats.refused, stats.queued) == (2, 0, 0)
    assert [r.levelno for r in caplog.records] == [logging.DEBUG, logging.DEBUG]
    assert "without usage data" in caplog.records[0].getMessage()
    assert "whole number" not in caplog.text


def test_the_same_response_tracked_again_later_is_a_quiet_duplicate(
    kernel_and_tracker: tuple[FakeKernel, UsageTracker], caplog: pytest.LogCaptureFixture
) -> None:
    """Each copy of one response is the same event, time included: the first delivered
    alone, the repeat after it is a duplicate, not an idempotency conflict."""
    kernel, tracker = kernel_and_tracker
    anthropic_style = {"id": "msg_01", "usage": {"input_tokens": 10, "output_tokens": 5}}
    with caplog.at_level(logging.WARNING, logger="billing_kernel_sdk"):
        for response in (CHAT, anthropic_style):
            tracker.track_llm_usage("acme", response)
            assert tracker.flush(5)
            time.sleep(0.002)  # a later call: a new timestamp, unless the event keeps its own
            tracker.track_llm_usage("acme", response)
            assert tracker.flush(5)
    stats = tracker.stats()
    assert (stats.accepted, stats.duplicates, stats.conflicts, stats.refused) == (2, 2, 0, 0)
    assert kernel.totals() == {"acme": 42 + 15}
    assert caplog.records == []
    chat = kernel.seen[("acme", "llm:chatcmpl-abc")]
    assert chat["occurred_at"] == "2023-11-14T22:13:20+00:00"  # the provider's `created`


def test_runs_count_once_per_run_id_with_the_context_manager_and_the_decorator(
    kernel_and_tracker: tuple[FakeKernel, UsageTracker],
) -> None:
    kernel, tracker = kernel_and_tracker

    @tracker.tracks_run()
    def execute(org_id: str, run_id: str, step: int = 0) -> str:
        return f"{run_id}:{step}"

    with tracker.run("acme", run_id="r1") as decision:
        assert (decision.allowed, decision.consumed) == (True, True)
    assert execute("acme", "r1", step=2) == "r1:2"  # the same run, retried: counted once
    assert execute(org_id="acme", run_id="r2") == "r2:0"
    assert kernel.totals("playbook_runs") == {"acme": 2}  # consumed, not queued
    assert tracker.stats().queued == 0
