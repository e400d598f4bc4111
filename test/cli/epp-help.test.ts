/** The EPP's --help and README say what is exposed where, and every hardening bound is a documented flag. */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { formatHelp } from "../../src/common/flags.js";
import { EPP_FLAGS } from "../../src/epp/flags.js";

const README = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
const SECURITY = readFileSync(new URL("../../docs/security.md", import.meta.url), "utf8");
/** Flags whose defaults are security bounds: each must be in the README flag list and in docs/security.md. */
const BOUNDS = [
  "metrics-label-max-length",
  "metrics-model-label-limit",
  "metrics-model-label-idle-expiry",
  "resources-max-bytes",
  "grpc-max-streams-per-connection",
  "grpc-stream-idle-timeout",
  "metrics-bind-address",
  "enable-debug-endpoints",
  "metrics-endpoint-auth",
  "scrape-max-series",
  "log-flush-interval",
];

describe("epp --help", () => {
  it("says that every port binds 0.0.0.0 by default and how to change it", () => {
    const help = formatHelp("epp", "", EPP_FLAGS);
    expect(help).toMatch(/--host <string>\n.*0\.0\.0\.0 is every interface.*\(default 0\.0\.0\.0\)/);
  });

  it.each(BOUNDS)("documents --%s in the README and docs/security.md", (flag) => {
    expect(Object.keys(EPP_FLAGS)).toContain(flag);
    expect(README).toContain(`--${flag}`);
    expect(SECURITY).toContain(`--${flag}`);
  });
});
