import { describe, expect, it } from "vitest";
import { ConfigReader, PluginParamError, readParams } from "../../src/common/config-reader.js";
import { ConfigError } from "../../src/common/errors.js";

function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error("expected an error");
}

describe("the common config reader", () => {
  const r = new ConfigReader("epp.yaml");

  it("names the file and the full field path", () => {
    const root = r.mapping({ a: { b: [{ n: 0 }] } }, "section");
    const item = r.mapping(root.mapping("a").list("b")[0], `${root.at("a")}.b[0]`);
    const err = (() => {
      try {
        item.integer("n", { min: 1 });
      } catch (e) {
        return e as ConfigError;
      }
    })();
    expect(err).toBeInstanceOf(ConfigError);
    expect([err!.file, err!.field, err!.detail]).toEqual([
      "epp.yaml",
      "section.a.b[0].n",
      "must be an integer >= 1, got 0",
    ]);
  });

  it("reads precise types: safe integers, finite numbers, non-blank strings, durations, quantities", () => {
    const m = r.mapping(
      { big: 2 ** 60, inf: Number.POSITIVE_INFINITY, blank: " ", ttl: "1m30s", size: "2Ki", list: ["a", ""] },
      "x",
    );
    expect(messageOf(() => m.integer("big"))).toBe(`epp.yaml: x.big: must be an integer, got ${2 ** 60}`);
    expect(messageOf(() => m.number("inf"))).toBe("epp.yaml: x.inf: must be a number, got Infinity");
    expect(messageOf(() => m.string("blank"))).toBe('epp.yaml: x.blank: must be a non-empty string, got " "');
    expect(m.duration("ttl")).toBe(90_000);
    expect(m.bytes("size", 0)).toBe(2048);
    expect(messageOf(() => m.strings("list"))).toBe('epp.yaml: x.list[1]: must be a non-empty string, got ""');
    expect(m.integer("absent", {}, 7)).toBe(7);
  });

  it("rejects keys nobody read, and keys outside an allowed set", () => {
    const m = r.mapping({ known: 1, typo: 2 }, "s");
    m.integer("known");
    expect(messageOf(() => m.done())).toBe("epp.yaml: s.typo: unknown field (known: known)");
    expect(messageOf(() => r.mapping({ x: 1 }, "t").only(["a", "b"]))).toBe(
      "epp.yaml: t.x: unknown field (known: a, b)",
    );
  });

  it("reads plugin parameters relative to `parameters`, for the loader to prefix", () => {
    const p = readParams({ weight: -1 });
    let err: unknown;
    try {
      p.number("weight", { min: 0 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PluginParamError);
    expect((err as PluginParamError).field).toBe("weight");
    const none = readParams(undefined);
    expect(() => readParams({ extra: 1 }).done()).toThrow(
      "parameters.extra: unknown parameter (this plugin takes no parameters)",
    );
    none.done();
    expect(() => readParams([1])).toThrow("parameters: must be a mapping, got a list");
  });
});
