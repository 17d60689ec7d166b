"""A session whose block raises: it is recorded as FAILED with the exception's type and message.

galtea-otel never swallows the application's exceptions: the error propagates out of the ``with`` block
unchanged; here the script catches it at top level, so it exits 0 and prints the outcome.
"""

import contextlib

import galtea_otel

galtea_otel.configure()

CUSTOM_ID = "failing-session-1"


class PaymentServiceDown(RuntimeError):
    pass


@galtea_otel.inference(model="fake-llm-1")
def chat(prompt: str) -> str:
    if "refund" in prompt:
        raise PaymentServiceDown("payments API returned 503")
    return "Hello! How can I help?"


@galtea_otel.span("issue_refund", type="TOOL")
def issue_refund(order_id: str) -> str:
    raise PaymentServiceDown(f"cannot refund {order_id}: payments API returned 503")


try:
    with galtea_otel.session(custom_id=CUSTOM_ID, version="1.0.0"):
        chat("hi")
        # A failed turn the code handles: the turn is FAILED, the session goes on.
        with contextlib.suppress(PaymentServiceDown):
            chat("I want a refund")
        issue_refund("A1001")  # not handled: the session fails
except PaymentServiceDown as exc:
    print(f"The conversation failed as expected: {type(exc).__name__}: {exc}")
finally:
    galtea_otel.shutdown()

print(f"Recorded session {CUSTOM_ID} as FAILED: run `galtea-otel sessions show {CUSTOM_ID}`")
