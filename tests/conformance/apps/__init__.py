"""One script per instrumentation; each runs in its own process (they all patch the openai client)."""
