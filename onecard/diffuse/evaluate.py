"""Did the LoRA learn the subject, and does the class prompt still draw the class? CLIP measures, tuned against base.

- CLIP score (prompt-image agreement): 100 * max(cos(image, text), 0) of CLIP embeddings, averaged over images, as
  torchmetrics' `CLIPScore` (Hessel et al. 2021, arXiv:2104.08718). The trigger token is left out of the text: CLIP
  has never seen "sks".
- Subject similarity (DreamBooth's CLIP-I, Ruiz et al. 2022, arXiv:2208.12242): the mean cosine similarity of CLIP
  image embeddings over all pairs of a generated image and a training image.
- Class drift: the class prompt drawn with and without the LoRA at the same seeds; the mean cosine similarity of
  each pair (1.0: the LoRA leaves the class alone).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["load_clip", "embed_images", "embed_texts", "clip_score", "mean_similarity", "paired_similarity",
           "without_token", "save_images"]


def load_clip(ref: str, device: str) -> tuple[Any, Any]:
    """A transformers CLIP model and its processor from a folder or a cached hub id (never downloaded)."""
    from transformers import CLIPModel, CLIPProcessor

    from onecard.core.errors import ModelNotFoundError
    from onecard.core.sources import resolve_model

    path = resolve_model(ref).path
    try:
        model = CLIPModel.from_pretrained(str(path)).to(device).eval()
        processor = CLIPProcessor.from_pretrained(str(path))
    except (OSError, ValueError) as e:
        raise ModelNotFoundError(f"{ref} does not load as a CLIP model: {e}",
                                 "pass a CLIP model folder or a cached hub id such as openai/clip-vit-large-patch14 "
                                 "(`huggingface-cli download openai/clip-vit-large-patch14` once, online)") from e
    return model, processor


def embed_images(model: Any, processor: Any, images: list[Any]) -> torch.Tensor:
    """Unit-length CLIP image embeddings of PIL images: (N, D)."""
    import torch

    inputs = processor(images=images, return_tensors="pt").to(model.device)
    with torch.no_grad():
        out = model.get_image_features(**inputs)
    emb = out if isinstance(out, torch.Tensor) else out.pooler_output
    return torch.nn.functional.normalize(emb.float(), dim=-1)


def embed_texts(model: Any, processor: Any, texts: list[str]) -> torch.Tensor:
    """Unit-length CLIP text embeddings: (N, D)."""
    import torch

    inputs = processor(text=texts, padding=True, truncation=True, return_tensors="pt").to(model.device)
    with torch.no_grad():
        out = model.get_text_features(**inputs)
    emb = out if isinstance(out, torch.Tensor) else out.pooler_output
    return torch.nn.functional.normalize(emb.float(), dim=-1)


def clip_score(images: torch.Tensor, text: torch.Tensor) -> float:
    """torchmetrics' CLIPScore of image embeddings (N, D) against one text embedding (1, D)."""
    return float((100 * (images @ text.T).clamp(min=0)).mean())


def mean_similarity(a: torch.Tensor, b: torch.Tensor) -> float:
    """The mean cosine similarity over all pairs of rows of `a` (N, D) and `b` (M, D) (CLIP-I)."""
    return float((a @ b.T).mean())


def paired_similarity(a: torch.Tensor, b: torch.Tensor) -> float:
    """The mean cosine similarity of row i of `a` with row i of `b`."""
    return float((a * b).sum(-1).mean())


def without_token(prompt: str, token: str) -> str:
    """The prompt with the trigger token taken out, for CLIP's text side."""
    return " ".join(w for w in prompt.split() if w != token) if token else prompt


def save_images(images: list[Any], folder: Path, stem: str) -> list[str]:
    """Write PIL images as folder/stem-0.png, stem-1.png ...; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, image in enumerate(images):
        files.append(str(folder / f"{stem}-{i}.png"))
        image.save(files[-1])
    return files

