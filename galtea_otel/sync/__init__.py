"""Sync session records to the Galtea platform: a durable outbox in the store, sent by a background worker.

``pip install 'galtea-otel[galtea]'``. Entry points: :class:`galtea_otel.sync.config.GalteaSyncConfig`,
:class:`galtea_otel.sync.worker.SyncWorker` (continuous) and :func:`galtea_otel.sync.worker.sync_once`
(``galtea-otel sync``); the outbox's one interface: :mod:`galtea_otel.sync.outbox`. This package's ``__init__``
imports nothing, and neither the stores nor ``galtea_otel.config`` import this package at import time (the
HTTP client is loaded only by a running sync).
"""
