"""A simulated support conversation, recorded with galtea-otel: what ``galtea-otel demo`` runs.

Everything is local and deterministic (no network, no API key): a scripted user simulator talks to a support
assistant backed by a fake LLM. Each assistant reply is one ``@galtea_otel.inference`` (one turn); inside it
the assistant may call a tool (``galtea_otel.span(type="TOOL")``) or search the policies
(``type="RETRIEVER"``), and reports its model and token usage with ``galtea_otel.record_usage``.

Three sessions are recorded:

- ``<run>-order-status``: production, three turns, one tool call;
- ``<run>-returns``: production, two turns, each with a retrieval;
- ``<run>-eval-return-window``: an evaluation (non-production) session linked to the registered test case
  ``tc-return-window``, whose context it takes;
- ``<run>-outage``: the LLM backend goes down on the second turn and the error escapes the conversation, so
  the session is FAILED with the exception's text (the failed turn is recorded too).

``examples/simulated_conversation.py`` runs this module; read it as an example.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import galtea_otel

__all__ = ["DEMO_TEST_CASES", "DEMO_VERSION", "MODEL", "run_demo"]

DEMO_VERSION = "demo-1.0.0"
MODEL = "fake-support-llm-1"
PRICE_PER_TOKEN = (0.15e-6, 0.60e-6)  # input, output (USD)

DEMO_TEST_CASES = [
    {
        "id": "tc-return-window",
        "input": "How many days do I have to return an item?",
        "expected_output": "30 days from delivery.",
        "context": "The customer received a pair of headphones 10 days ago.",
        "metadata": {"suite": "returns", "difficulty": "easy"},
    },
]

ORDERS: dict[str, dict[str, str | None]] = {
    "A1001": {"status": "shipped", "carrier": "DHL", "eta": "Thursday"},
    "A1002": {"status": "processing", "carrier": None, "eta": "next week"},
}

POLICIES = {
    "returns": "Items can be returned within 30 days from delivery, opened or not, in their original"
               " packaging.",
    "refunds": "Refunds reach the original payment method 5 to 7 business days after we receive the item.",
    "shipping": "Standard shipping takes 3 to 5 business days; express shipping takes 1 to 2.",
}


# --- the application's tools --------------------------------------------------------------------------------


@galtea_otel.span("lookup_order", type="TOOL")
def lookup_order(order_id: str) -> dict[str, str | None]:
    """A tool the assistant calls: the order's state (from an in-memory table)."""
    found: dict[str, str | None] = ORDERS.get(order_id, {"status": "unknown"})
    return dict(found)


@galtea_otel.span("search_policies", type="RETRIEVER")
def search_policies(query: str) -> list[str]:
    """A retriever: the policies sharing a keyword with the query."""
    words = set(_words(query))
    synonyms = {"return": "returns", "refund": "refunds", "ship": "shipping", "shipped": "shipping",
                "days": "returns", "back": "refunds"}
    topics = {synonyms.get(w, w) for w in words} & POLICIES.keys()
    return [POLICIES[t] for t in sorted(topics)]


# --- a deterministic fake LLM -------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _tokens(text: str) -> int:
    """A stand-in tokenizer: about four tokens per three words."""
    return max(1, (len(text.split()) * 4 + 2) // 3)


@dataclass
class FakeLLM:
    """Answers from rules, never from the network: the same conversation always gives the same reply."""

    model: str = MODEL
    down_after: int | None = None  # calls before the backend "goes down" (None: never)
    calls: int = 0

    def complete(self, history: Sequence[dict[str, str]], tool_results: Sequence[str] = ()) -> str:
        self.calls += 1
        if self.down_after is not None and self.calls > self.down_after:
            raise ConnectionError("LLM backend unavailable (HTTP 503 from fake-support-llm)")
        answer = self._answer(history[-1]["content"], tool_results)
        time.sleep(0.01 + 0.0005 * _tokens(answer))  # a model takes time; the recorded latency shows it
        return answer

    def _answer(self, message: str, tool_results: Sequence[str]) -> str:
        words = set(_words(message))
        order = re.search(r"\b[A-Z]\d{4}\b", message)
        if tool_results and order:
            return f"Order {order.group(0)}: {tool_results[0]}."
        if tool_results:
            return " ".join(tool_results)
        if words & {"order", "package", "parcel"}:
            return "I can check that for you. What is your order number?"
        if words & {"thanks", "thank", "great", "perfect"}:
            return "You're welcome! Is there anything else I can help you with?"
        return "Sorry, I did not get that. Could you rephrase?"


@dataclass
class SupportAssistant:
    """The application under observation: keeps the history and answers one message per turn."""

    llm: FakeLLM = field(default_factory=FakeLLM)
    history: list[dict[str, str]] = field(default_factory=list)

    @galtea_otel.inference(name="support-assistant.reply", model=MODEL)
    def reply(self, message: str) -> str:
        """One turn. Captured: input ``message`` (``self`` is dropped), output the returned text."""
        prompt_tokens = sum(_tokens(m["content"]) for m in self.history)  # the cached prefix
        self.history.append({"role": "user", "content": message})
        tool_results: list[str] = []
        order = re.search(r"\b[A-Z]\d{4}\b", message)
        if order:  # the model "decides" to call a tool
            found = lookup_order(order.group(0))
            if found.get("carrier"):
                tool_results.append(f"{found['status']} with {found['carrier']}, arriving {found['eta']}")
            else:
                tool_results.append(f"{found['status']}, expected {found.get('eta') or 'soon'}")
        elif set(_words(message)) & {"return", "refund", "refunds", "returns", "days"}:
            tool_results.extend(search_policies(message))
        answer = self.llm.complete(self.history, tool_results)
        self.history.append({"role": "assistant", "content": answer})
        input_tokens = prompt_tokens + _tokens(message) + sum(_tokens(t) for t in tool_results)
        output_tokens = _tokens(answer)
        galtea_otel.record_usage(
            model=self.llm.model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_input_tokens=prompt_tokens or None,
            cost=round(input_tokens * PRICE_PER_TOKEN[0] + output_tokens * PRICE_PER_TOKEN[1], 9),
        )
        # The app scores its own turn (issue 11): was the answer grounded in a tool result?
        galtea_otel.record_evaluation("grounded", score=1.0 if tool_results else 0.0,
                                      explanation=f"{len(tool_results)} tool result(s) used")
        return answer


# --- the user simulator -------------------------------------------------------------------------------------


@dataclass
class ScriptedUser:
    """Plays a customer from a script; answers the assistant's questions when it has the answer."""

    script: list[str]
    order_id: str | None = None

    def next_message(self, last_reply: str | None) -> str | None:
        if last_reply and "order number" in last_reply and self.order_id:
            order_id, self.order_id = self.order_id, None
            return f"Sure, it's {order_id}."
        return self.script.pop(0) if self.script else None


def converse(user: ScriptedUser, assistant: SupportAssistant, max_turns: int = 10) -> int:
    """Run the conversation until the user has nothing more to say. Returns the number of turns."""
    reply: str | None = None
    turns = 0
    while turns < max_turns:
        message = user.next_message(reply)
        if message is None:
            break
        reply = assistant.reply(message)
        turns += 1
    return turns


# --- the demo -----------------------------------------------------------------------------------------------


def run_demo(store: str | None = None, run_id: str | None = None) -> list[tuple[str, str]]:
    """Record the four demo sessions into ``store`` (default: ``$GALTEA_OTEL_STORE`` or
    ``sqlite:///galtea_sessions.db``) and return their keys, (custom_id, version). Records are committed when
    it returns. ``run_id`` prefixes the custom ids (default: a fresh ``demo-xxxxxx``), so runs never mix."""
    run = run_id or f"demo-{uuid.uuid4().hex[:6]}"
    from galtea_otel.evaluate.evaluators import failed_turn_rate, tool_call_failed

    # Evaluators run once each session is over, off the app's threads (issue 11); shutdown() waits for them.
    galtea_otel.configure(store=store, evaluators=[failed_turn_rate(), tool_call_failed()])
    galtea_otel.register_test_cases(DEMO_TEST_CASES)
    keys: list[tuple[str, str]] = []

    custom_id = f"{run}-order-status"
    with galtea_otel.session(custom_id=custom_id, version=DEMO_VERSION, metadata={"channel": "chat"}):
        user = ScriptedUser(["Hi! Where is my order?", "Great, thanks a lot!"], order_id="A1001")
        converse(user, SupportAssistant())
    keys.append((custom_id, DEMO_VERSION))

    custom_id = f"{run}-returns"
    with galtea_otel.session(custom_id=custom_id, version=DEMO_VERSION,
                             context="Logged-in customer, 3 orders", metadata={"channel": "email"}):
        user = ScriptedUser(["Can I return headphones that I already opened?",
                             "And when do I get my refund?"])
        converse(user, SupportAssistant())
    keys.append((custom_id, DEMO_VERSION))

    case = DEMO_TEST_CASES[0]
    custom_id = f"{run}-eval-{str(case['id']).removeprefix('tc-')}"
    with galtea_otel.session(custom_id=custom_id, version=DEMO_VERSION, test_case_id=str(case["id"]),
                             is_production=False):
        converse(ScriptedUser([str(case["input"])]), SupportAssistant())
    keys.append((custom_id, DEMO_VERSION))

    custom_id = f"{run}-outage"
    try:
        with galtea_otel.session(custom_id=custom_id, version=DEMO_VERSION, metadata={"channel": "chat"}):
            user = ScriptedUser(["Where is my package?", "It's A1002."])
            converse(user, SupportAssistant(llm=FakeLLM(down_after=1)))
    except ConnectionError:
        pass  # the application's own error handling; the session is recorded as FAILED with this error
    keys.append((custom_id, DEMO_VERSION))

    if not galtea_otel.shutdown():
        raise RuntimeError("galtea-otel could not commit the demo's records in time")
    return keys


def main() -> None:
    """Run the demo into the default store and say where to look."""
    keys = run_demo()
    print(f"Recorded {len(keys)} sessions:")
    for custom_id, version in keys:
        print(f"  {custom_id}  (version {version})")
    print(f"See them with: galtea-otel sessions list; galtea-otel sessions show {keys[0][0]}")


if __name__ == "__main__":
    main()
