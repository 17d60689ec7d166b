// A Node.js app records a conversation through the OpenTelemetry JS SDK and ends the session itself, the way
// galtea_otel.end_session() does in Python: a zero-length span with galtea.session.event = "end" and the
// session's key (README, "Ending a session from any language").
//
//   npm install @opentelemetry/api @opentelemetry/sdk-trace-node @opentelemetry/exporter-trace-otlp-proto
//   galtea-otel serve &                              # OTLP/HTTP on 127.0.0.1:4318
//   node end_session.mjs [custom_id] [--fail]        # then: galtea-otel sessions show <custom_id>
//
// Each user message is its own trace (one request per message, as a web app serves them). The exporter sends
// to OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (default http://127.0.0.1:4318/v1/traces). With --fail the session
// ends FAILED with the error text given.
import { SpanStatusCode, trace } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { BatchSpanProcessor, NodeTracerProvider } from "@opentelemetry/sdk-trace-node";

const args = process.argv.slice(2);
const customId = args.find((a) => !a.startsWith("--")) ?? `node-conv-${Date.now()}`;
const version = "1.0.0";
const session = { "galtea.session.custom_id": customId, "galtea.session.version": version };

const provider = new NodeTracerProvider({
  spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter())], // the endpoint from OTEL_EXPORTER_OTLP_*
});
const tracer = provider.getTracer("end-session-example");

const callModel = () => new Promise((resolve) => setTimeout(resolve, 20)); // stands for the model's answer

// One turn: an LLM call with the OpenTelemetry GenAI attributes (any instrumentation's spans would do).
async function turn(user, reply) {
  const messages = (role, text) => JSON.stringify([{ role, parts: [{ type: "text", content: text }] }]);
  const span = tracer.startSpan("chat echo-1", { attributes: {
    ...session,
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "echo-1",
    "gen_ai.input.messages": messages("user", user),
    "gen_ai.output.messages": messages("assistant", reply),
    "gen_ai.usage.input_tokens": user.split(" ").length,
    "gen_ai.usage.output_tokens": reply.split(" ").length,
  } });
  await callModel();
  span.end();
}

// The end marker: ends the session COMPLETED, or FAILED with `error`.
function endSession(error) {
  const now = Date.now();
  const span = tracer.startSpan("galtea.session.end", {
    attributes: { ...session, "galtea.session.event": "end" }, startTime: now, root: true,
  });
  if (error) {
    span.setAttribute("galtea.span.error", error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: error });
  }
  span.end(now);
}

await turn("Hi! Where is my order?", "Which order number?");
await turn("A1001, please.", "Order A1001 ships on Thursday.");
endSession(args.includes("--fail") ? "the user gave up" : undefined);
await provider.shutdown(); // flushes the batch
console.log(`session ${customId} (version ${version}) ended`);
