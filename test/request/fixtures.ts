/** Response bodies shaped like vLLM / OpenAI output, shared by the request tests. */

const chunk = (delta: object, extra = "") =>
  `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"tgt-lora","choices":[{"index":0,"delta":${JSON.stringify(delta)}}]${extra}}\n\n`;

/** Chat stream with include_usage: role chunk, two content chunks, finish, usage chunk, [DONE]. */
export const CHAT_STREAM =
  chunk({ role: "assistant", content: "" }) +
  chunk({ content: "Hel" }) +
  chunk({ content: "lo" }) +
  'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"tgt-lora","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n' +
  'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"tgt-lora","choices":[],' +
  '"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9,"prompt_tokens_details":{"cached_tokens":4}}}\n\n' +
  "data: [DONE]\n\n";

export const CHAT_USAGE = { promptTokens: 7, completionTokens: 2, totalTokens: 9, cachedTokens: 4 };

/** Responses API stream: usage only in response.completed; two delta events carry content. */
export const RESPONSES_STREAM =
  "event: response.created\n" +
  'data: {"type":"response.created","response":{"id":"r1","object":"response","model":"tgt-lora","status":"in_progress","usage":null}}\n\n' +
  "event: response.output_text.delta\n" +
  'data: {"type":"response.output_text.delta","item_id":"m1","output_index":0,"content_index":0,"delta":"Hi"}\n\n' +
  "event: response.output_text.delta\n" +
  'data: {"type":"response.output_text.delta","item_id":"m1","output_index":0,"content_index":0,"delta":" there"}\n\n' +
  "event: response.output_text.done\n" +
  'data: {"type":"response.output_text.done","item_id":"m1","output_index":0,"content_index":0,"text":"Hi there"}\n\n' +
  "event: response.completed\n" +
  'data: {"type":"response.completed","response":{"id":"r1","object":"response","model":"tgt-lora","status":"completed",' +
  '"output":[{"type":"message","content":[{"type":"output_text","text":"Hi there"}]}],' +
  '"usage":{"input_tokens":11,"input_tokens_details":{"cached_tokens":8},"output_tokens":2,' +
  '"output_tokens_details":{"reasoning_tokens":0},"total_tokens":13}}}\n\n';

export const RESPONSES_USAGE = { promptTokens: 11, completionTokens: 2, totalTokens: 13, cachedTokens: 8 };

/** Non-streaming chat completion, pretty-printed the way Python's json.dumps does (", " and ": "). */
export const CHAT_JSON =
  '{"id": "c2", "object": "chat.completion", "model": "tgt-lora", "choices": [{"index": 0, "message": ' +
  '{"role": "assistant", "content": "the \\"model\\": \\"tgt-lora\\" text stays"}}], ' +
  '"usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8, "prompt_tokens_details": {"cached_tokens": 2}}}';

/** What the client must see after write-back from tgt-lora to base-model. */
export function writtenBack(text: string): string {
  return text
    .replaceAll('"model":"tgt-lora"', '"model":"base-model"')
    .replaceAll('"model": "tgt-lora"', '"model": "base-model"');
}

/** Splits `buf` at the given ascending offsets. */
export function splitAt(buf: Buffer, offsets: readonly number[]): Buffer[] {
  const parts: Buffer[] = [];
  let prev = 0;
  for (const o of offsets) {
    parts.push(buf.subarray(prev, o));
    prev = o;
  }
  parts.push(buf.subarray(prev));
  return parts;
}
