/**
 * The simulator's stand-in tokenizer, for the vLLM endpoints a router calls before routing (/tokenize,
 * /detokenize, /v1/chat/completions/render; docs/design/model-servers.md §10). It must agree with the engine, or a
 * router that matches prefixes by token ids would be told about a cache the simulator does not have:
 * - one token is CHARS_PER_TOKEN (4) characters of the rendered prompt, the unit `estimateTokens` counts, so
 *   `count` equals the `prompt_tokens` the same prompt is billed and scheduled with;
 * - a token's id is a hash of its 4 characters, so equal texts give equal ids, and 16 ids (one KV block of the
 *   default block size) cover exactly the 64 characters the engine hashes into one prefix-cache block.
 * Ids are ≥ FIRST_ID (below it vLLM vocabularies keep special tokens) and < 2^31, so they fit the u32 and i32
 * token types routers use. Decoding uses a bounded table of the ids this simulator has produced: hashes do not
 * invert, and a router only ever sends back ids it got from the same server.
 */
import { CHARS_PER_TOKEN } from "../common/constants.js";
import { hashChunk } from "./random.js";

const FIRST_ID = 256;
const ID_SPAN = 2 ** 31 - FIRST_ID;
/** Distinct ids remembered for /detokenize; the table is dropped and refilled when it outgrows this. */
const DECODE_TABLE_LIMIT = 1 << 18;

export class SimTokenizer {
  #pieces = new Map<number, string>();

  /** Token ids of `text`: one per CHARS_PER_TOKEN characters, the last one possibly shorter. */
  encode(text: string): number[] {
    const n = Math.ceil(text.length / CHARS_PER_TOKEN);
    const ids = new Array<number>(n);
    for (let i = 0; i < n; i++) {
      const start = i * CHARS_PER_TOKEN;
      const end = Math.min(start + CHARS_PER_TOKEN, text.length);
      const id = FIRST_ID + (hashChunk(text, start, end, 0) % ID_SPAN);
      ids[i] = id;
      if (!this.#pieces.has(id)) {
        if (this.#pieces.size >= DECODE_TABLE_LIMIT) this.#pieces.clear();
        this.#pieces.set(id, text.slice(start, end));
      }
    }
    return ids;
  }

  /** The text of one id this tokenizer produced, or undefined. */
  piece(id: number): string | undefined {
    return this.#pieces.get(id);
  }

  /** Text of `ids`; an id this simulator never produced decodes as `<unk>`. */
  decode(ids: readonly number[]): string {
    let out = "";
    for (const id of ids) out += this.#pieces.get(id) ?? "<unk>";
    return out;
  }
}
