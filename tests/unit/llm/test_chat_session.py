"""The conversation behind `onecard chat`: history, /reset, /save, schema checks, the REPL and one-shot mode."""

from __future__ import annotations

import io
import json
from collections.abc import Generator
from pathlib import Path

import pytest

from onecard.core.errors import OnecardError
from onecard.llm import ChatConfig, InvalidOutputError, Reply
from onecard.llm.base import Backend, Capabilities, Request
from onecard.llm.catalog import pull
from onecard.llm.chat import Chat, one_shot, repl


class Echo(Backend):
    """Answers with the last user message, upper-cased, in two chunks."""

    name = "echo"
    capabilities = Capabilities(json_schema=True)

    def _generate(self, request: Request) -> Generator[str, None, Reply]:
        text = request.messages[-1]["content"].upper()
        yield text[:2]
        yield text[2:]
        return Reply(text, prompt_tokens=len(request.messages), completion_tokens=2, ttft_s=0.1, total_s=0.2)


def test_history_reset_and_save(tmp_path: Path) -> None:
    chat = Chat(Echo("echo"), ChatConfig(system="be brief"))
    seen: list[str] = []
    assert chat.ask("hello", seen.append).text == "HELLO" and seen == ["HE", "LLO"]
    chat.ask("again")
    assert [m["role"] for m in chat.history] == ["system", "user", "assistant", "user", "assistant"]
    chat.save(tmp_path / "c.json")
    saved = json.loads((tmp_path / "c.json").read_text())
    assert saved["backend"] == "echo" and saved["messages"] == chat.history
    chat.reset()
    assert chat.history == [{"role": "system", "content": "be brief"}]


def test_a_reply_that_breaks_the_schema_is_an_error_and_leaves_history_alone(tmp_path: Path) -> None:
    schema = tmp_path / "s.json"
    schema.write_text('{"type": "object"}')
    chat = Chat(Echo("echo"), ChatConfig(json_schema=schema))
    assert chat.ask("{}").text == "{}"
    with pytest.raises(InvalidOutputError, match="not valid JSON"):
        chat.ask("not json")
    assert len(chat.history) == 3


def test_with_a_schema_only_a_whole_valid_reply_is_shown(tmp_path: Path) -> None:
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"CITY": {"type": "string"}}, "required": ["CITY"]}))
    chat = Chat(Echo("echo"), ChatConfig(json_schema=schema))
    seen: list[str] = []
    with pytest.raises(InvalidOutputError, match="'CITY' is a required property"):
        chat.ask('{"town": "paris"}', seen.append)
    out = io.StringIO()
    with pytest.raises(InvalidOutputError, match="not valid JSON"):
        one_shot(chat, '{"city": "par', None, out, print, as_json=False)
    assert seen == [] and out.getvalue() == ""  # Echo streams in two chunks: neither reached the user
    assert chat.ask('{"city": "paris"}', seen.append).text == '{"CITY": "PARIS"}' and seen == ['{"CITY": "PARIS"}']
    assert [m["role"] for m in chat.history] == ["system", "user", "assistant"]  # the failed turns left nothing


def test_the_token_budget_fits_the_longest_bounded_reply(tmp_path: Path) -> None:
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "object", "additionalProperties": False, "properties": {
        "city": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}}}))
    # "{ " + '"city" : ' + 256-character string + ", " + '"tags" : ' + [10 such strings] + "} ": 2899 characters
    # at most (schema.max_reply_chars counts a comma after each value), a token for each and one for the end.
    assert Chat(Echo("echo"), ChatConfig(json_schema=schema)).max_tokens == 2900
    assert Chat(Echo("echo"), ChatConfig(json_schema=schema, max_tokens=64)).max_tokens == 64  # the user's word
    assert Chat(Echo("echo"), ChatConfig()).max_tokens == 512


def test_repl_commands_and_turns(tmp_path: Path) -> None:
    chat = Chat(Echo("echo"), ChatConfig())
    out, lines = io.StringIO(), []
    script = ["hi\n", f"/save {tmp_path / 'a.json'}\n", "/reset\n", "/nope\n", "/save\n", "\n", "bye\n",
              f"/save {tmp_path / 'b.json'}\n", "/exit\n", "never\n"]
    assert repl(chat, iter(script), out, lines.append) == 0
    assert out.getvalue() == "HI\nBYE\n"
    first = json.loads((tmp_path / "a.json").read_text())["messages"]
    second = json.loads((tmp_path / "b.json").read_text())["messages"]
    assert [m["content"] for m in first] == [ChatConfig().system, "hi", "HI"]
    assert [m["content"] for m in second] == [ChatConfig().system, "bye", "BYE"]
    assert any("unknown command /nope" in line for line in lines) and "usage: /save FILE" in lines
    assert sum("tokens/s" in line for line in lines) == 2


def test_one_shot_appends_stdin_and_prints_json() -> None:
    out = io.StringIO()
    reply = one_shot(Chat(Echo("echo"), ChatConfig()), "summarise", "notes", out, print, as_json=True)
    assert reply.text == "SUMMARISE\n\nNOTES"
    data = json.loads(out.getvalue())
    assert data["text"] == reply.text and data["completion_tokens"] == 2 and data["backend"] == "echo"


def test_pull_offline_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OnecardError, match="HF_HUB_OFFLINE=1"):
        pull("HuggingFaceTB/SmolLM2-360M-Instruct")
    with pytest.raises(OnecardError, match="not a hub reference"):
        pull("llama3.1:8b")
