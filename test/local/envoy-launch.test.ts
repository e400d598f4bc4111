/**
 * startEnvoy (src/local/envoy.ts) takes readiness only from the Envoy it started: an admin port already answered by
 * another Envoy (one left over from an earlier run) must not pass for it. The other Envoy is a loopback HTTP server
 * answering the admin paths like a live Envoy; the started "binary" is a process that never opens the port.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEnvoy } from "../../src/local/envoy.js";

const LISTEN_PORT = 1; // never opened: only the admin's listener list mentions it

let dir: string;
let admin: Server;
let adminPort: number;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "switchyard-envoy-launch-"));
  admin = createServer((req, res) => {
    if (req.url === "/ready") res.end("LIVE\n");
    else if (req.url?.startsWith("/listeners")) res.end(JSON.stringify({ listener_statuses: [{ port: LISTEN_PORT }] }));
    else if (req.url === "/server_info") res.end(JSON.stringify({ state: "LIVE", node: { id: "someone-else" } }));
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => admin.listen(0, "127.0.0.1", resolve));
  adminPort = (admin.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise((r) => admin.close(r));
  rmSync(dir, { recursive: true, force: true });
});

describe("startEnvoy", () => {
  it("does not take another Envoy answering on its admin port for the one it started", async () => {
    // Stands in for an Envoy that cannot bind the taken admin port: it runs and never answers.
    const binary = join(dir, "fake-envoy");
    writeFileSync(binary, "#!/bin/sh\nexec sleep 60\n");
    chmodSync(binary, 0o755);
    let pid: number | undefined;
    const start = startEnvoy({
      binary,
      configFile: join(dir, "envoy.yaml"),
      logFile: join(dir, "envoy.log"),
      readyTimeoutMs: 1500,
      onSpawn: (child) => {
        pid = child.pid;
      },
      config: { listenPort: LISTEN_PORT, adminPort, eppPort: 9002 },
    });
    await expect(start).rejects.toThrow(/another Envoy \(node id "someone-else"\) answers on admin port/);
    // The process it started is not left behind.
    expect(pid).toBeDefined();
    await expect
      .poll(() => {
        try {
          process.kill(pid!, 0);
          return true;
        } catch {
          return false;
        }
      })
      .toBe(false);
  });
});
