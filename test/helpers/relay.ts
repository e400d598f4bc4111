/**
 * Pod addresses for servers that cannot bind one: llm-d-inference-sim and vLLM listen on a port of their own on
 * 127.0.0.1, while an InferencePool gives every pod the same target port on its own address. A relay listens on
 * `address:port` (127.0.1.x, the pool's port) and pipes each connection to `127.0.0.1:target`, byte for byte.
 */
import { createServer, connect as netConnect, type Server, type Socket } from "node:net";

/**
 * `n` distinct free ports. All are held open until every one is chosen: asked one at a time, the kernel may hand
 * the same ephemeral port out twice, and two servers meant to be distinct would then be one.
 */
export async function freePorts(n: number, host = "127.0.0.1"): Promise<number[]> {
  const held = Array.from({ length: n }, () => createServer());
  for (const s of held) await new Promise<void>((r) => s.listen(0, host, r));
  const ports = held.map((s) => (s.address() as { port: number }).port);
  await Promise.all(held.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ports;
}

/** One free port (several at once: freePorts, which cannot hand out the same one twice). */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  return (await freePorts(1, host))[0]!;
}

/** Each relay's open sockets, destroyed by closeRelays (a server's own close waits for its connections to end). */
const openSockets = new WeakMap<Server, Set<Socket>>();

export async function relay(address: string, port: number, target: number): Promise<Server> {
  const sockets = new Set<Socket>();
  const server = createServer((c) => {
    const u = netConnect(target, "127.0.0.1");
    sockets.add(c);
    sockets.add(u);
    c.pipe(u);
    u.pipe(c);
    c.on("error", () => u.destroy());
    u.on("error", () => c.destroy());
    c.on("close", () => {
      sockets.delete(c);
      u.destroy();
    });
    u.on("close", () => {
      sockets.delete(u);
      c.destroy();
    });
  });
  openSockets.set(server, sockets);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, address, resolve);
  });
  return server;
}

/**
 * Relays for several targets on one shared pool port (retried on EADDRINUSE). Returns the port and the servers,
 * in the order of `targets`.
 */
export async function relayPods(
  addresses: readonly string[],
  targets: readonly number[],
): Promise<{ port: number; relays: Server[] }> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const relays: Server[] = [];
    try {
      for (const [i, address] of addresses.entries()) relays.push(await relay(address, port, targets[i]!));
      return { port, relays };
    } catch (err) {
      await Promise.all(relays.map((r) => new Promise((res) => r.close(res))));
      if ((err as NodeJS.ErrnoException).code !== "EADDRINUSE") throw err;
    }
  }
  throw new Error("no free shared pool port for the relays after 20 attempts");
}

export function closeRelays(relays: readonly Server[]): Promise<unknown> {
  return Promise.all(
    relays.map((r) => {
      const closed = new Promise((res) => r.close(res));
      for (const s of openSockets.get(r) ?? []) s.destroy();
      return closed;
    }),
  );
}

/** Polls `check` until it holds (errors count as "not yet"); throws naming `what` after `timeoutMs`. */
export async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
