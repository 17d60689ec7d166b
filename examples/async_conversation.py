"""An async conversation: ``async with`` sessions, an ``async def`` inference, and two sessions running
concurrently in asyncio tasks, each keeping its own turns (the context follows each task)."""

import asyncio

import galtea_otel

galtea_otel.configure()


@galtea_otel.span("fetch_profile", type="TOOL")
async def fetch_profile(user_id: str) -> dict[str, str]:
    await asyncio.sleep(0.01)  # an I/O call
    return {"user_id": user_id, "plan": "pro"}


@galtea_otel.inference(model="fake-async-llm-1")
async def chat(user_id: str, message: str) -> str:
    profile = await fetch_profile(user_id)
    await asyncio.sleep(0.01)  # the model "thinks"
    galtea_otel.record_usage(input_tokens=len(message.split()) + 5, output_tokens=8, cost=0.00002)
    return f"[{profile['plan']}] Got it: {message}"


async def conversation(user_id: str, messages: list[str]) -> None:
    async with galtea_otel.session(custom_id=f"async-{user_id}", version="2.0.0", metadata={"user": user_id}):
        for message in messages:
            await chat(user_id, message)


async def main() -> None:
    await asyncio.gather(
        conversation("alice", ["Hi", "Upgrade my plan", "Thanks"]),
        conversation("bob", ["Hello", "Cancel my order"]),
    )


if __name__ == "__main__":
    asyncio.run(main())
    galtea_otel.shutdown()
    print("Recorded sessions async-alice (3 turns) and async-bob (2 turns)")
