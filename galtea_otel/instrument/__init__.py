"""Instrumentation: sessions, inference and other spans, stamping, capture: the application's side."""
