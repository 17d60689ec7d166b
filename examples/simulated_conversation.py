"""A simulated multi-turn support conversation: a scripted user simulator, a deterministic fake LLM (no
network), a tool call (``galtea_otel.span(type="TOOL")``), a retriever, token usage
(``galtea_otel.record_usage``) and an evaluation session linked to a registered test case.

It is what ``galtea-otel demo`` runs; the code lives in ``galtea_otel/cli/demo.py`` so that the installed
package carries it. Run ``python examples/simulated_conversation.py``, then ``galtea-otel sessions list``.
"""

from galtea_otel.cli.demo import main

if __name__ == "__main__":
    main()
