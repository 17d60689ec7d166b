"""The direct alternative to the sync: galtea-otel's spans sent as they are to the platform's OTLP ingestion.

The Galtea platform ingests OTLP itself (its collector, ``https://otel.platform.prod-main.galtea.ai`` (``/v1/traces``),
or OTLP/JSON at ``POST {GALTEA_API_URL}/otel/traces``; header ``Authorization: Bearer <GALTEA_API_KEY>``). The
attribute keys galtea-otel writes on its spans are the ones that ingestion reads, listed here; the tests check
galtea-otel's real spans against this list. What ingestion needs that galtea-otel cannot know is the platform
version: set the resource attribute ``galtea.version.id`` on your TracerProvider (or route by product-level
resource-attribute rules on the platform).

The platform then groups turns its own way (one turn per trace id within a conversation key), and there is no
outbox: a span lost by the exporter is lost. The REST sync (:mod:`galtea_otel.sync.worker`) keeps galtea-otel's
own turns and statuses and delivers exactly once.
"""

from __future__ import annotations

from galtea_otel import attributes as A

# Keys the platform's OTLP ingestion reads (docs/GALTEA_PLATFORM.md "OTLP ingestion"; the SDK's
# galtea.infrastructure.telemetry.attributes mirrors the API's constants).
CONVERSATION_KEYS = (A.SESSION_CUSTOM_ID, A.GEN_AI_CONVERSATION_ID, A.SESSION_ID)  # first found wins
TEST_CASE_KEY = A.TEST_CASE_ID  # span beats resource
RESOURCE_VERSION_KEY = "galtea.version.id"
SPAN_FIELD_KEYS = {
    "type": A.SPAN_TYPE,
    "description": "galtea.span.description",
    "input": A.SPAN_INPUT,
    "output": A.SPAN_OUTPUT,
    "error": A.SPAN_ERROR,
    "metadata": "galtea.span.metadata",
}
INGESTION_READS = frozenset({*CONVERSATION_KEYS, TEST_CASE_KEY, *SPAN_FIELD_KEYS.values()})

# galtea.* keys galtea-otel also writes for its own receiver, which the platform's ingestion does not read (harmless
# there): the version string, session context / metadata / lifecycle markers, abandoned streams, cost.
GALTEA_OTEL_ONLY = frozenset({A.SESSION_VERSION, A.SESSION_CONTEXT, A.SESSION_METADATA, A.SESSION_EVENT,
                              A.SPAN_ABANDONED, A.INFERENCE_COST})

OTLP_COLLECTOR_ENDPOINT = "https://otel.platform.prod-main.galtea.ai/v1/traces"
OTLP_JSON_PATH = "otel/traces"
