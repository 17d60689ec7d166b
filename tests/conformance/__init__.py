"""Conformance: real LLM instrumentations -> OTLP -> galtea-otel serve -> session records."""
