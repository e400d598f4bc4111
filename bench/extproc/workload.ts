/**
 * The request both sides of bench/extproc agree on: the client (run.ts) sends it over the wire, the in-process
 * logic measurement (server.ts) feeds it to the stream state machine directly.
 */

/** Request headers as Envoy would send them for a chat completion (x-request-id is added per request). */
export const HEADERS = [
  [":method", "POST"],
  [":path", "/v1/chat/completions"],
  [":authority", "gateway.local"],
  [":scheme", "http"],
  ["content-type", "application/json"],
  ["user-agent", "bench"],
  ["accept", "*/*"],
] as const;

/** Request body chunk size, as Envoy's buffer slices arrive. */
export const CHUNK_BYTES = 32 * 1024;

/** An OpenAI chat body of about `bytes` bytes (one user message of repeated prose). */
export function chatBody(bytes: number): Buffer {
  const base = { model: "meta-llama/Llama-3.1-8B-Instruct", max_tokens: 128, stream: true };
  const overhead = JSON.stringify({ ...base, messages: [{ role: "user", content: "" }] }).length;
  const content = "The quick brown fox jumps over the lazy dog. "
    .repeat(Math.ceil(bytes / 45))
    .slice(0, Math.max(0, bytes - overhead));
  return Buffer.from(JSON.stringify({ ...base, messages: [{ role: "user", content }] }));
}
