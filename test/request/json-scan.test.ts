import { describe, expect, it } from "vitest";
import {
  decodeJsonString,
  findTopLevelValue,
  type JsonRange,
  skipString,
  TopLevelScanner,
} from "../../src/request/json-scan.js";
import { createRandom } from "../../src/scheduling/index.js";

function slice(buf: Buffer, r: JsonRange | undefined): string | undefined {
  return r === undefined ? undefined : buf.toString("utf8", r.start, r.end);
}

const TRICKY_STRINGS = ["", 'a"b', "back\\slash", "\\", '\\"', "tab\there", "é😀", "}]{[,:", "model", "\u0000\u001f"];

function randomValue(rnd: () => number, depth: number): unknown {
  const pick = Math.floor(rnd() * (depth > 3 ? 4 : 6));
  switch (pick) {
    case 0:
      return TRICKY_STRINGS[Math.floor(rnd() * TRICKY_STRINGS.length)];
    case 1:
      return Math.floor(rnd() * 1e6) / 100 - 5000;
    case 2:
      return [true, false, null][Math.floor(rnd() * 3)];
    case 3:
      return `s${Math.floor(rnd() * 1000)}`;
    case 4: {
      const n = Math.floor(rnd() * 4);
      return Array.from({ length: n }, () => randomValue(rnd, depth + 1));
    }
    default: {
      const o: Record<string, unknown> = {};
      const n = Math.floor(rnd() * 4);
      for (let i = 0; i < n; i++) o[i === 0 ? "model" : `k${i}`] = randomValue(rnd, depth + 1);
      return o;
    }
  }
}

/** JSON.stringify with random whitespace between tokens (outside strings). */
function spaced(value: unknown, rnd: () => number): string {
  const ws = () => [" ", "\n", "\t", "\r\n  ", ""][Math.floor(rnd() * 5)]!;
  if (Array.isArray(value)) return `[${ws()}${value.map((v) => spaced(v, rnd)).join(`${ws()},${ws()}`)}${ws()}]`;
  if (value !== null && typeof value === "object")
    return `{${ws()}${Object.entries(value)
      .map(([k, v]) => `${JSON.stringify(k)}${ws()}:${ws()}${spaced(v, rnd)}`)
      .join(`${ws()},${ws()}`)}${ws()}}`;
  return JSON.stringify(value);
}

describe("TopLevelScanner", () => {
  it("finds every top-level value kind and ignores nested keys of the same name", () => {
    const text =
      ' {\n "messages" : [ {"model":"nested","content":"say \\"model\\": \\\\ ok"} ],\t"n":-1.5e+3 ,' +
      '"t":true,"z":null,"o":{"model":{"model":"deep"}},"model"  :  "top" } ';
    const buf = Buffer.from(text);
    const scan = new TopLevelScanner(["model", "messages", "n", "t", "z", "o", "absent"]).scan(buf);
    expect(scan.complete).toBe(true);
    const got = scan.ranges.map((r) => slice(buf, r));
    expect(got).toEqual([
      '"top"',
      '[ {"model":"nested","content":"say \\"model\\": \\\\ ok"} ]',
      "-1.5e+3",
      "true",
      "null",
      '{"model":{"model":"deep"}}',
      undefined,
    ]);
  });

  it("keeps number spellings JSON.parse would change (1e400, 20-digit integers)", () => {
    const buf = Buffer.from('{"a":1e400,"b":12345678901234567890,"c":0.10000000000000000001}');
    const [a, b, c] = new TopLevelScanner(["a", "b", "c"]).scan(buf).ranges;
    expect([slice(buf, a), slice(buf, b), slice(buf, c)]).toEqual([
      "1e400",
      "12345678901234567890",
      "0.10000000000000000001",
    ]);
  });

  it("matches keys spelled with escapes, as JSON.parse does", () => {
    const buf = Buffer.from('{"mod\\u0065l":"m1","x":1}');
    expect(slice(buf, findTopLevelValue(buf, "model"))).toBe('"m1"');
  });

  it("resolves duplicate keys to the last occurrence, like JSON.parse", () => {
    const buf = Buffer.from('{"model":"first","x":[1],"model":"second"}');
    expect(slice(buf, findTopLevelValue(buf, "model"))).toBe('"second"');
    expect(JSON.parse(buf.toString()).model).toBe("second");
  });

  it("handles multi-byte UTF-8 before the value (byte offsets, not string offsets)", () => {
    const buf = Buffer.from('{"p":"日本語😀","model":"m"}');
    const r = findTopLevelValue(buf, "model")!;
    expect(buf.toString("utf8", r.start, r.end)).toBe('"m"');
    expect(r.start).toBe(Buffer.byteLength('{"p":"日本語😀","model":'));
  });

  it("agrees with JSON.parse on 300 random documents with random whitespace", () => {
    const rnd = createRandom(42);
    const keys = ["model", "k1", "k2", "k3"];
    const scanner = new TopLevelScanner(keys);
    for (let n = 0; n < 300; n++) {
      const doc: Record<string, unknown> = {};
      for (const k of keys) if (rnd() < 0.8) doc[k] = randomValue(rnd, 0);
      const buf = Buffer.from(spaced(doc, rnd));
      const scan = scanner.scan(buf);
      expect(scan.complete).toBe(true);
      keys.forEach((k, i) => {
        const r = scan.ranges[i];
        if (!(k in doc)) expect(r).toBeUndefined();
        else expect(JSON.parse(buf.toString("utf8", r!.start, r!.end))).toEqual(doc[k]);
      });
    }
  });

  it("never throws on truncated or malformed input and reports it as incomplete", () => {
    const full = '{"model":"a\\"b","messages":[{"x":[1,{"y":"}"}]}],"n":12}';
    const scanner = new TopLevelScanner(["model", "messages", "n"]);
    for (let i = 0; i < full.length; i++) {
      const scan = scanner.scan(Buffer.from(full.slice(0, i)));
      expect(scan.complete).toBe(false);
    }
    expect(scanner.scan(Buffer.from(full)).complete).toBe(true);
    for (const bad of ["", "[]", "null", '{"a" 1}', '{"a":}', "{,}", '{"a":1,}', '{"a":1}x', '{"a":"\\', "{a:1}"]) {
      expect(scanner.scan(Buffer.from(bad)).complete, bad).toBe(false);
    }
    expect(scanner.scan(Buffer.from(" {} ")).complete).toBe(true);
  });

  it("skips very deep nesting without recursion", () => {
    const depth = 200_000;
    const buf = Buffer.from(`{"deep":${"[".repeat(depth)}${"]".repeat(depth)},"model":"m"}`);
    expect(slice(buf, findTopLevelValue(buf, "model"))).toBe('"m"');
  });
});

describe("skipString / decodeJsonString", () => {
  it("terminates on a quote preceded by an even number of backslashes only", () => {
    for (const s of ["plain", 'q"q', "\\", "\\\\", '\\"', 'x\\\\\\"y']) {
      const enc = JSON.stringify(s);
      const buf = Buffer.from(`${enc},"after"`);
      expect(skipString(buf, 0)).toBe(Buffer.byteLength(enc));
      expect(decodeJsonString(buf, { start: 0, end: Buffer.byteLength(enc) })).toBe(s);
    }
    expect(skipString(Buffer.from('"never closed\\"'), 0)).toBe(-1);
  });

  it("decodes \\uXXXX escapes and rejects non-strings", () => {
    const buf = Buffer.from('"caf\\u00e9 \\ud83d\\ude00"');
    expect(decodeJsonString(buf, { start: 0, end: buf.length })).toBe("café 😀");
    const num = Buffer.from("123");
    expect(decodeJsonString(num, { start: 0, end: 3 })).toBeUndefined();
    const broken = Buffer.from('"\\x"');
    expect(decodeJsonString(broken, { start: 0, end: broken.length })).toBeUndefined();
  });
});
