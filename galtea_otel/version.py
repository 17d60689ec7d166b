"""The galtea-otel version: a leaf module (it imports nothing), so that any module can name it without importing
the instrumentation's configuration (``galtea_otel.config``) or being imported by it."""

VERSION = "0.1.0"
