"""Streaming: a decorated function returning a generator of chunks. The turn's output is what the caller
consumed; a stream abandoned early (``break``) still ends its span, with the output seen so far, marked as
abandoned."""

from collections.abc import Iterator

import galtea_otel

galtea_otel.configure()


@galtea_otel.inference(model="fake-stream-llm-1")
def stream_chat(prompt: str) -> Iterator[str]:
    for word in f"Here is a long answer about {prompt} , in several chunks .".split():
        yield word + " "


with galtea_otel.session(custom_id="streaming-1", version="1.0.0"):
    full = "".join(stream_chat("streams"))  # consumed to the end
    print("full answer:", full)

    seen = []
    for chunk in stream_chat("abandoned streams"):
        seen.append(chunk)
        if len(seen) == 3:
            break  # the user stopped reading: the turn keeps these three chunks and is marked abandoned
    print("abandoned after:", "".join(seen))

galtea_otel.shutdown()
print("Recorded session streaming-1: run `galtea-otel sessions show streaming-1`")
