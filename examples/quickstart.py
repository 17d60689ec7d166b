"""Quickstart: one session, two turns, recorded into ./galtea_sessions.db (or $GALTEA_OTEL_STORE)."""

import galtea_otel

galtea_otel.configure()


@galtea_otel.inference(model="echo-1")
def chat(prompt: str) -> str:
    return f"You said: {prompt}"  # call your LLM here


with galtea_otel.session(custom_id="quickstart-1", version="1.0.0"):
    chat("hello")
    chat("what can you do?")

galtea_otel.shutdown()  # commit the records before exiting
print("Recorded session quickstart-1: run `galtea-otel sessions show quickstart-1`")
