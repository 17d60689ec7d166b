"""``galtea-otel ui``: a local, read-only web UI on a store (sessions, conversations, timelines), live.

Standard library only (``http.server``); the CSS and JS are package data in ``static/``, written for this
project, and nothing is fetched from outside the machine. See ``galtea_otel.ui.server``.
"""
