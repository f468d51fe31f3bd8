"""`onecard rag`: a local assistant over your notes and code.

Incremental index (FAISS + SQLite + bm25s), hybrid search with optional cross-encoder reranking, answers through
`onecard.llm` with citations checked against what was retrieved, tools, and an evaluation harness.
"""
