"""Tools the model may call, and a bounded loop: ask, run the calls it makes, give back the results, ask again.

`rag` hands its search to the model this way. The loop stops after `max_steps` rounds of calls, or when the model
repeats calls it already made; then it is asked once more with tool_choice "none", so it answers from what it has.
Each call is logged and kept in `ToolRun.calls`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from onecard.llm.base import Backend, Message, Reply, ToolCall

__all__ = ["Tool", "ToolRun", "CallLog", "run_tools"]

log = logging.getLogger("onecard.llm.tools")


@dataclass(frozen=True)
class Tool:
    """A function the model may call: its name, what it does, and a JSON schema of its keyword arguments."""

    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[..., Any]

    def schema(self) -> dict[str, Any]:
        """The OpenAI tool schema."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}


@dataclass
class CallLog:
    """One tool call as it happened."""

    step: int
    name: str
    arguments: dict[str, Any]
    result: str
    seconds: float
    error: str | None = None


@dataclass
class ToolRun:
    """The final reply, the whole conversation (calls and results included), and every call made."""

    reply: Reply
    messages: list[Message]
    calls: list[CallLog] = field(default_factory=list)
    steps: int = 0


def run_tools(backend: Backend, messages: list[Message], tools: list[Tool], *, max_steps: int = 4,
              temperature: float = 0.0, max_tokens: int = 512) -> ToolRun:
    """Let the model call `tools` until it answers, for at most `max_steps` rounds of calls.

    A tool that raises, or a call to an unknown tool, is reported to the model as an error result (and logged), so
    the model can correct itself; the loop never runs a tool the model did not name.
    """
    by_name = {t.name: t for t in tools}
    schemas = [t.schema() for t in tools]
    history = list(messages)
    run = ToolRun(Reply(""), history)
    made: set[str] = set()
    for step in range(1, max_steps + 1):
        reply = backend.chat(history, tools=schemas, temperature=temperature, max_tokens=max_tokens)
        run.reply, run.steps = reply, step
        if not reply.tool_calls:
            return run
        keys = {f"{c.name}:{json.dumps(c.arguments, sort_keys=True)}" for c in reply.tool_calls}
        if keys <= made:  # small models ask again for what they have; the results are in the history already
            log.info("tool loop: step %d repeats earlier calls, asking for an answer", step)
            break
        made |= keys
        history.append(reply.message())
        for call in reply.tool_calls:
            entry = _call(by_name, call, step)
            run.calls.append(entry)
            history.append({"role": "tool", "tool_call_id": call.id, "name": call.name, "content": entry.result})
    else:
        log.info("tool loop: %d steps used, asking for an answer", max_steps)
    run.reply = backend.chat(history, tools=schemas, tool_choice="none", temperature=temperature, max_tokens=max_tokens)
    return run


def _call(by_name: dict[str, Tool], call: ToolCall, step: int) -> CallLog:
    start = time.perf_counter()
    tool = by_name.get(call.name)
    error = None
    if tool is None:
        error = f"unknown tool {call.name!r}; the tools are: {', '.join(by_name)}"
    else:
        try:
            value = tool.fn(**call.arguments)
            result = value if isinstance(value, str) else json.dumps(value, default=str)
        except Exception as e:  # the model sees the error and may retry with other arguments
            error = f"{type(e).__name__}: {e}"
    if error is not None:
        result = json.dumps({"error": error})
    entry = CallLog(step, call.name, call.arguments, result, time.perf_counter() - start, error)
    log.info("tool call %d: %s(%s) -> %s%s", step, call.name, json.dumps(call.arguments), result[:200],
             f" [error: {error}]" if error else "")
    return entry
