"""Image content parts in OpenAI's message format, checked once before any backend sees them.

    {"role": "user", "content": [{"type": "text", "text": "What colour is the square?"},
                                 {"type": "image_url", "image_url": {"url": "photo.jpg"}}]}

The url is a `data:image/...;base64,...` URL or a local file path (`file://` too). Web URLs are refused: nothing is
downloaded behind the user's back. Each backend then takes the images the way its runtime wants them: llama.cpp and
OpenAI-compatible servers as data URLs, Ollama as a base64 `images` list, transformers as PIL images.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from onecard.llm.errors import LLMError

__all__ = ["image_part", "user_message", "normalize", "has_images", "image_urls", "text_of", "image_bytes",
           "data_url", "with_data_urls", "load_image"]

Message = dict[str, Any]


def image_part(image: str | Path) -> dict[str, Any]:
    """The content part for an image file or data URL."""
    return {"type": "image_url", "image_url": {"url": str(image)}}


def user_message(text: str, images: Sequence[str | Path] = ()) -> Message:
    """A user turn: plain text, or the images then the text as content parts (LLaVA puts images first)."""
    if not images:
        return {"role": "user", "content": text}
    return {"role": "user", "content": [*(image_part(i) for i in images), {"type": "text", "text": text}]}


def normalize(messages: list[Message]) -> list[Message]:
    """The messages checked, with content parts in one form: `image_url` as {"url": ...}, and a list of text parts
    only joined into one string (what every chat template renders).

    Raises:
        LLMError: a message or part is malformed, an image is not in a user message, or an image file is missing
            or a web URL; the error names the message and part by index.
    """
    out: list[Message] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise LLMError(f"message {i} is not a chat message: {str(message)[:200]!r}",
                           "give each message a role (system, user, assistant, tool) and a content")
        content = message.get("content")
        if content is None or isinstance(content, str):
            out.append(message)
            continue
        if not isinstance(content, list):
            raise LLMError(f"message {i}'s content is a {type(content).__name__}, not a string or a list of parts",
                           'pass a string, or parts such as {"type": "text", "text": "..."}')
        parts = [_part(i, j, part) for j, part in enumerate(content)]
        if any(p["type"] == "image_url" for p in parts) and message["role"] != "user":
            raise LLMError(f"message {i} ({message['role']}) holds an image; only user messages may",
                           "put the image in a user message")
        if all(p["type"] == "text" for p in parts):
            out.append({**message, "content": "".join(p["text"] for p in parts)})
        else:
            out.append({**message, "content": parts})
    return out


def _part(i: int, j: int, part: Any) -> dict[str, Any]:
    where = f"message {i}, part {j}"
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise LLMError(f"{where}: a text part without a string 'text'", '{"type": "text", "text": "..."}')
        return {"type": "text", "text": part["text"]}
    if kind == "image_url":
        ref = part.get("image_url")
        url = ref.get("url") if isinstance(ref, dict) else ref
        if not isinstance(url, str) or not url:
            raise LLMError(f"{where}: an image_url part without a url",
                           '{"type": "image_url", "image_url": {"url": "photo.jpg or data:image/png;base64,..."}}')
        _check_url(where, url)
        return {"type": "image_url", "image_url": {"url": url}}
    raise LLMError(f"{where}: unknown content part {str(part)[:200]!r}",
                   'use {"type": "text", "text": ...} or {"type": "image_url", "image_url": {"url": ...}}')


def _check_url(where: str, url: str) -> None:
    if url.startswith("data:"):
        head, _, payload = url.partition(",")
        if not head.endswith(";base64") or not payload:
            raise LLMError(f"{where}: the data URL {url[:60]!r} is not base64 image data",
                           "write it as data:image/png;base64,<base64 bytes>")
        return
    if url.startswith(("http://", "https://")):
        raise LLMError(f"{where}: {url} is a web URL; onecard reads images from local files only",
                       "download the image and pass its path")
    path = _path(url)
    if not path.is_file():
        raise LLMError(f"{where}: image file {path} does not exist", "check the path (relative to the current folder)")


def _path(url: str) -> Path:
    return Path(url.removeprefix("file://")).expanduser()


def has_images(messages: list[Message]) -> bool:
    """Whether any message holds an image part."""
    return bool(image_urls(messages))


def image_urls(messages: list[Message]) -> list[str]:
    """The url of every image part, in order (messages as `normalize` returns them)."""
    return [p["image_url"]["url"] for m in messages if isinstance(m.get("content"), list)
            for p in m["content"] if p.get("type") == "image_url"]


def text_of(content: str | list[dict[str, Any]] | None) -> str:
    """A message content's text: the string, or its text parts joined."""
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(p["text"] for p in content if p.get("type") == "text")


def image_bytes(url: str) -> bytes:
    """The encoded image (PNG, JPEG...) a data URL or a file path holds."""
    if url.startswith("data:"):
        try:
            return base64.b64decode(url.partition(",")[2], validate=True)
        except (binascii.Error, ValueError):
            raise LLMError(f"the data URL {url[:60]!r}... is not valid base64",
                           "encode the image bytes with base64") from None
    return _path(url).read_bytes()


def data_url(url: str) -> str:
    """`url` as a data URL (a file is read and encoded; its type from the extension, else PNG)."""
    if url.startswith("data:"):
        return url
    kind = mimetypes.guess_type(_path(url).name)[0] or "image/png"
    return f"data:{kind};base64,{base64.b64encode(image_bytes(url)).decode('ascii')}"


def with_data_urls(messages: list[Message]) -> list[Message]:
    """The messages with every image as a data URL: what llama.cpp and remote servers can read."""
    out: list[Message] = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            content = [{"type": "image_url", "image_url": {"url": data_url(p["image_url"]["url"])}}
                       if p["type"] == "image_url" else p for p in content]
            m = {**m, "content": content}
        out.append(m)
    return out


def load_image(url: str) -> Any:
    """The image as an RGB PIL image.

    Raises:
        LLMError: the bytes are not an image Pillow can decode.
    """
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(image_bytes(url))) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ImportError) as e:
        # ImportError: ultralytics, once imported in the process, patches Image.open to try a HEIF plugin it may lack
        shown = url if not url.startswith("data:") else url[:40] + "..."
        raise LLMError(f"the image {shown} does not decode ({e})",
                       "pass a PNG, JPEG, WebP or GIF file that opens in an image viewer") from None
