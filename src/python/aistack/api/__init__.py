"""Standalone runtime: the FastAPI app (v1 2020-compatible API, v2 API, web page)."""
