"""`onecard chat`: a conversation with history, one-shot answers, and the REPL (/reset, /save FILE, /exit, and
/image PATH with a vision model).

The CLI calls `one_shot` or `repl`; both print the reply as it streams and the speed after it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from onecard.llm.base import Backend, Message, Reply
from onecard.llm.config import DEFAULT_MAX_TOKENS, ChatConfig
from onecard.llm.images import user_message

__all__ = ["Chat", "one_shot", "repl", "read_lines", "speed_line", "HELP", "IMAGE_HELP"]

HELP = "/reset: forget the conversation   /save FILE: write it as JSON   /exit: quit (or Ctrl-D)"
IMAGE_HELP = "/image PATH: add an image to your next message   "


class Chat:
    """A conversation with one backend: the system prompt, the turns so far, and the JSON schema if any."""

    def __init__(self, backend: Backend, config: ChatConfig) -> None:
        from onecard.llm.schema import bounded, load_schema, max_reply_chars

        self.backend = backend
        self.config = config
        self.schema = load_schema(config.json_schema) if config.json_schema else None
        # One token per character of the longest bounded reply, and one for the end of the reply.
        longest = max_reply_chars(bounded(self.schema)) if self.schema else None
        self.max_tokens = config.max_tokens or max(DEFAULT_MAX_TOKENS, (longest or 0) + 1)
        self.history: list[Message] = []
        self.reset()

    def reset(self) -> None:
        """Forget every turn; keep the system prompt."""
        self.history = [{"role": "system", "content": self.config.system}] if self.config.system else []

    def ask(self, text: str, on_text: Callable[[str], None] | None = None,
            images: Sequence[str | Path] = ()) -> Reply:
        """Add the user's turn (with `images`, files or data URLs, before its text), answer it (streaming the text to
        `on_text`), add the answer, and return it.

        With a JSON schema the reply goes to `on_text` whole, once it validates (the backend checks it); a reply that
        does not, or a failed turn, raises and leaves the history as it was.
        """
        self.history.append(user_message(text, images))
        try:
            stream = self.backend.stream(self.history, json_schema=self.schema, temperature=self.config.temperature,
                                         max_tokens=self.max_tokens, seed=self.config.seed)
            for piece in stream:
                if on_text is not None and self.schema is None:
                    on_text(piece)
            assert stream.reply is not None
        except BaseException:
            self.history.pop()
            raise
        if on_text is not None and self.schema is not None:
            on_text(stream.reply.text)
        self.history.append(stream.reply.message())
        return stream.reply

    def save(self, path: Path) -> None:
        """Write the conversation and the settings that produced it as JSON."""
        data = {"backend": self.backend.name, "model": self.backend.model, "settings": self.backend.settings,
                "temperature": self.config.temperature, "messages": self.history}
        path.expanduser().write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def speed_line(reply: Reply) -> str:
    """What the REPL prints after a reply: token counts, speeds and time to first token."""
    return (f"[{reply.prompt_tokens} prompt tokens, {reply.completion_tokens} new: {reply.tokens_per_s:.1f} tokens/s, "
            f"first token after {reply.ttft_s:.2f} s]")


def _writer(out: TextIO) -> Callable[[str], None]:
    def write(piece: str) -> None:
        out.write(piece)
        out.flush()

    return write


def one_shot(chat: Chat, prompt: str, stdin_text: str | None, out: TextIO, status: Callable[[str], None],
             as_json: bool, images: Sequence[str | Path] = ()) -> Reply:
    """Answer `prompt` (with piped standard input appended after a blank line, and `images`) and print it."""
    text = prompt if not stdin_text else f"{prompt}\n\n{stdin_text}"
    reply = chat.ask(text, None if as_json else _writer(out), images)
    if as_json:
        data: dict[str, Any] = {"backend": chat.backend.name, "model": chat.backend.model, **reply.to_json(),
                                "settings": chat.backend.settings}
        if chat.schema is not None:
            data["json"] = json.loads(reply.text)
        out.write(json.dumps(data, indent=2, default=str) + "\n")
    else:
        out.write("\n")
        status(speed_line(reply))
    return reply


def repl(chat: Chat, lines: Iterator[str], out: TextIO, status: Callable[[str], None], as_json: bool = False,
         images: Sequence[str | Path] = ()) -> int:
    """Read turns from `lines` until /exit or the end; a context overflow is reported and the chat goes on.

    `images`, and those added with /image PATH (vision models), go with the next turn.
    """
    from onecard.core.errors import OnecardError

    vision = chat.backend.capabilities.vision
    status(f"chatting with {chat.backend.model} ({chat.backend.name}). {IMAGE_HELP if vision else ''}{HELP}")
    pending = [str(i) for i in images]
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if line in ("/exit", "/quit"):
            break
        if line == "/reset":
            chat.reset()
            status("(conversation reset)")
        elif line.startswith("/save"):
            target = line[len("/save"):].strip()
            if not target:
                status("usage: /save FILE")
                continue
            chat.save(Path(target))
            status(f"(saved {len(chat.history)} messages to {target})")
        elif vision and line.startswith("/image"):
            target = line[len("/image"):].strip()
            if not target or not Path(target).expanduser().is_file():
                status(f"no image file {target!r}" if target else "usage: /image PATH")
                continue
            pending.append(target)
            status(f"({len(pending)} image(s) go with your next message)")
        elif line.startswith("/"):
            status(f"unknown command {line.split()[0]}. {IMAGE_HELP if vision else ''}{HELP}")
        else:
            try:
                reply = chat.ask(line, None if as_json else _writer(out), pending)
            except OnecardError as e:  # context overflow, invalid reply, server gone: say so, keep the session
                status(f"error: {e}")
                continue
            finally:
                pending = []
            if as_json:
                out.write(json.dumps(reply.to_json(), default=str) + "\n")
            else:
                out.write("\n")
                status(speed_line(reply))
            out.flush()
    return 0


def read_lines(stream: TextIO = sys.stdin, prompt: str = ">>> ") -> Iterator[str]:
    """Lines typed at a terminal (with line editing) or piped in."""
    if not stream.isatty():
        yield from stream
        return
    import readline  # noqa: F401  (importing it gives input() history and editing)

    while True:
        try:
            yield input(prompt)
        except EOFError:
            print()
            return
