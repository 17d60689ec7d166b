"""Sync session records to the Galtea platform: a durable outbox in the store, sent by a background worker.

``pip install 'galtea-otel[galtea]'``. Entry points: :class:`galtea_otel.sync.config.GalteaSyncConfig`,
:class:`galtea_otel.sync.worker.SyncWorker` (continuous) and :func:`galtea_otel.sync.worker.sync_once`
(``galtea-otel sync``). This package's ``__init__`` imports nothing: the stores import
:mod:`galtea_otel.sync.schema`, and the HTTP client is loaded only by a running sync.
"""
