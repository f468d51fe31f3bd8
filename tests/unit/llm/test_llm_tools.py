"""The bounded tool loop and the capability checks, on a scripted backend (no model)."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from onecard.llm import Reply, Tool, ToolCall, UnsupportedError, run_tools
from onecard.llm.base import Backend, Capabilities, Request

ADD = Tool("add", "add two integers", {"type": "object"}, lambda a, b: a + b)


class Scripted(Backend):
    """Replies from a script, in order; records each request."""

    name = "scripted"
    capabilities = Capabilities(tools=True)

    def __init__(self, replies: list[Reply]) -> None:
        super().__init__("scripted")
        self.replies = replies
        self.requests: list[Request] = []

    def _generate(self, request: Request) -> Generator[str, None, Reply]:
        self.requests.append(request)
        reply = self.replies.pop(0)
        yield reply.text
        return reply


def _call(name: str, **arguments: int) -> Reply:
    return Reply("", [ToolCall(f"call_{name}", name, arguments)], finish_reason="tool_calls")


def test_calls_run_and_results_go_back_until_the_model_answers(caplog: pytest.LogCaptureFixture) -> None:
    backend = Scripted([_call("add", a=2, b=3), Reply("2 + 3 = 5")])
    caplog.set_level("INFO", logger="onecard.llm.tools")
    run = run_tools(backend, [{"role": "user", "content": "2 + 3?"}], [ADD])
    assert run.reply.text == "2 + 3 = 5" and run.steps == 2
    assert [(c.step, c.name, c.result, c.error) for c in run.calls] == [(1, "add", "5", None)]
    assert [m["role"] for m in run.messages] == ["user", "assistant", "tool"]
    assert run.messages[2] == {"role": "tool", "tool_call_id": "call_add", "name": "add", "content": "5"}
    assert backend.requests[0].tools == [ADD.schema()] and "tool call 1: add" in caplog.text


def test_the_loop_is_bounded_and_ends_with_an_answer() -> None:
    backend = Scripted([_call("add", a=1, b=i) for i in range(3)] + [Reply("done")])
    run = run_tools(backend, [{"role": "user", "content": "count"}], [ADD], max_steps=3)
    assert len(run.calls) == 3 and run.reply.text == "done"
    assert backend.requests[-1].tool_choice == "none" and len(backend.requests) == 4


def test_a_repeated_call_stops_the_loop() -> None:
    backend = Scripted([_call("add", a=1, b=1), _call("add", a=1, b=1), Reply("2")])
    run = run_tools(backend, [{"role": "user", "content": "1 + 1?"}], [ADD], max_steps=5)
    assert len(run.calls) == 1 and run.reply.text == "2" and backend.requests[-1].tool_choice == "none"


def test_unknown_tools_and_failing_tools_are_reported_to_the_model() -> None:
    def boom(**_: int) -> None:
        raise RuntimeError("disk full")

    backend = Scripted([_call("sub", a=1), _call("boom"), Reply("sorry")])
    run = run_tools(backend, [{"role": "user", "content": "x"}], [ADD, Tool("boom", "fails", {}, boom)])
    assert "unknown tool 'sub'" in (run.calls[0].error or "") and "add" in run.calls[0].result
    assert run.calls[1].error == "RuntimeError: disk full" and "disk full" in run.calls[1].result
    assert run.reply.text == "sorry"


def test_a_backend_refuses_what_it_cannot_do_before_any_work() -> None:
    class NoTools(Scripted):
        capabilities = Capabilities(tools=False, json_schema=False, notes=("plain text only",))

    backend = NoTools([Reply("never")])
    with pytest.raises(UnsupportedError, match="cannot call tools.*plain text only"):
        backend.chat([{"role": "user", "content": "x"}], tools=[ADD.schema()])
    with pytest.raises(UnsupportedError, match="JSON schema"):
        backend.stream([{"role": "user", "content": "x"}], json_schema={"type": "object"})
    assert backend.requests == []
