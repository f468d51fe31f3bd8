"""Word and character error rates (jiwer) after Whisper's text normalisation.

Normalisers: Whisper's `EnglishTextNormalizer` for English and `BasicTextNormalizer` otherwise, as transformers ships
them (a port of openai/whisper's whisper/normalizers). English is scored without Whisper's British-to-American
spelling table (the `normalizer.json` of the hub tokenizers; no Whisper package ships it offline), so "colour" and
"color" count as different words. Both texts of a pair go through the same normaliser, so this only matters where the
reference and the transcript spell a word differently.

Corpus figures are jiwer's: errors summed over all files divided by reference words summed (not a mean of rates).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Literal

__all__ = ["normalizer", "error_rates", "word_changes"]

Normalize = Callable[[str], str]


def normalizer(kind: Literal["english", "basic"]) -> Normalize:
    """Whisper's English or basic text normaliser."""
    from onecard.core.extras import require

    require("transformers", "asr")
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer, EnglishTextNormalizer

    if kind == "english":
        return EnglishTextNormalizer({})  # type: ignore[no-untyped-call]
    return BasicTextNormalizer()


def error_rates(references: Sequence[str], hypotheses: Sequence[str], normalize: Normalize) -> dict[str, float]:
    """WER and CER of the hypotheses against the references, after `normalize`, with the error counts.

    A reference that normalises to nothing is left out (WER is undefined for it).
    """
    import jiwer

    pairs = [(r, h) for r, h in ((normalize(r), normalize(h)) for r, h in zip(references, hypotheses, strict=True))
             if r.strip()]
    if not pairs:
        return {}
    refs, hyps = [r for r, _ in pairs], [h for _, h in pairs]
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    return {"wer": words.wer, "cer": chars.cer, "substitutions": words.substitutions, "deletions": words.deletions,
            "insertions": words.insertions, "reference_words": sum(len(r.split()) for r in refs)}


def word_changes(original: str, edited: str, normalize: Normalize, allowed: Collection[str] = ()) -> float:
    """The share of the original's words an edit changed: WER of the edit against the original, both normalised.

    Words of `allowed` (glossary names) that the edit substitutes or inserts are not counted: spelling a name as the
    glossary does is what the edit is for.
    """
    import jiwer

    before, after = normalize(original), normalize(edited)
    if not before.strip():
        return 0.0 if not after.strip() else 1.0
    free = {w for term in allowed for w in normalize(term).split()}
    out = jiwer.process_words(before, after)
    hyp = out.hypotheses[0]
    changed = 0
    for chunk in out.alignments[0]:
        if chunk.type == "delete":
            changed += chunk.ref_end_idx - chunk.ref_start_idx
        elif chunk.type in ("substitute", "insert"):
            changed += sum(w not in free for w in hyp[chunk.hyp_start_idx:chunk.hyp_end_idx])
    return changed / len(before.split())
