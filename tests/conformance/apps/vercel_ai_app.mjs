// Vercel AI SDK (ai 6 + @ai-sdk/openai's chat model) with experimental_telemetry, exported by the OpenTelemetry
// JS SDK over OTLP/HTTP protobuf. The session and the end user are set as the AI SDK's docs recommend: telemetry
// metadata (ai.telemetry.metadata.sessionId / userId). Each call of generateText / streamText is its own trace.
// Started by tests/conformance/test_producers.py from a folder holding the pinned node_modules.
import { createOpenAI } from "@ai-sdk/openai";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { generateText, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: this app is started by tests/conformance`);
  return value;
}

const turns = JSON.parse(env("CONFORMANCE_TURNS"));
const system = env("CONFORMANCE_SYSTEM");
const modelName = env("CONFORMANCE_MODEL");
const toolName = env("CONFORMANCE_TOOL_NAME");

const provider = new NodeTracerProvider({
  resource: resourceFromAttributes({ "service.name": "conformance-vercel-ai" }),
  spanProcessors: [
    new BatchSpanProcessor(new OTLPTraceExporter({ url: env("CONFORMANCE_OTLP_ENDPOINT").replace(/\/$/, "") + "/v1/traces" })),
  ],
});
provider.register();

const openai = createOpenAI({ baseURL: env("CONFORMANCE_OPENAI_BASE_URL"), apiKey: "sk-conformance" });
const model = openai.chat(modelName);
const telemetry = {
  isEnabled: true,
  functionId: "conformance-chat",
  metadata: { sessionId: env("CONFORMANCE_SESSION_ID"), userId: env("CONFORMANCE_USER_ID") },
};
const tools = {
  [toolName]: tool({
    description: "The current weather in a city.",
    inputSchema: z.object({ city: z.string() }),
    execute: async ({ city }) => `Sunny and 22 degrees in ${city}.`,
  }),
};

const history = [];
for (const [index, turn] of turns.entries()) {
  const messages = [...history, { role: "user", content: turn.user }];
  const options = { model, system, messages, tools, maxRetries: 0, experimental_telemetry: telemetry };
  try {
    let reply;
    if (turn.kind === "stream") {
      const result = streamText(options);
      reply = "";
      for await (const piece of result.textStream) reply += piece;
    } else {
      const result = await generateText({ ...options, stopWhen: stepCountIs(5) });
      reply = result.text;
    }
    if (turn.kind === "fail") throw new Error(`turn ${index} should have failed`);
    history.push({ role: "user", content: turn.user }, { role: "assistant", content: reply });
    console.log(`turn ${index}: ${reply}`);
  } catch (error) {
    if (turn.kind !== "fail" || error?.name !== "AI_APICallError") throw error;
    console.log(`turn ${index}: failed: ${error.name}`);
  }
}
await provider.shutdown();
