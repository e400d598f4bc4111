/**
 * The scrape transport (src/datalayer/http-get.ts) against raw loopback TCP servers that answer byte by byte, in
 * odd splits, with every framing HTTP/1.1 allows and with the ways a server can lie or hang.
 */
import { createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ERROR_BODY_LIMIT, GetError, Http1GetClient, MAX_HEADER_BYTES } from "../../src/datalayer/http-get.js";

interface Conn {
  readonly socket: Socket;
  /** Requests read on this connection so far. */
  requests: string[];
}

/** Calls `answer` for every complete request head, with the connection and the request's index on it. */
interface RawServer {
  readonly port: number;
  readonly conns: Conn[];
  close(): Promise<void>;
}

const servers: RawServer[] = [];
const clients: Http1GetClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.destroy()));
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function rawServer(answer: (conn: Conn, index: number, connIndex: number) => void): Promise<RawServer> {
  const conns: Conn[] = [];
  const server: Server = createServer((socket) => {
    const conn: Conn = { socket, requests: [] };
    const connIndex = conns.length;
    conns.push(conn);
    socket.on("error", () => {});
    let acc = "";
    socket.on("data", (d) => {
      acc += d.toString("latin1");
      for (;;) {
        const end = acc.indexOf("\r\n\r\n");
        if (end === -1) break;
        const head = acc.slice(0, end);
        acc = acc.slice(end + 4);
        conn.requests.push(head);
        answer(conn, conn.requests.length - 1, connIndex);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  const raw: RawServer = {
    port: address.port,
    conns,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of conns) c.socket.destroy();
        server.close(() => resolve());
      }),
  };
  servers.push(raw);
  return raw;
}

function client(port: number, keepAliveTimeoutMs = 10_000): Http1GetClient {
  const c = new Http1GetClient({ host: "127.0.0.1", port, keepAliveTimeoutMs });
  clients.push(c);
  return c;
}

/** Writes `parts` one per event-loop turn, so the client sees them as separate reads. */
async function writeApart(socket: Socket, parts: (string | Buffer)[]): Promise<void> {
  for (const p of parts) {
    socket.write(p);
    await new Promise((r) => setTimeout(r, 2));
  }
}

function ok(body: string | Buffer, extra = ""): string | Buffer {
  const b = typeof body === "string" ? Buffer.from(body) : body;
  return Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\ncontent-length: ${b.length}\r\n${extra}\r\n`), b]);
}

/** A server whose first request gets `first` and every later one a 200 with `then` as its body. */
function firstThen(first: string | Buffer, then: string): Promise<RawServer> {
  let answered = false;
  return rawServer((conn) => {
    conn.socket.write(answered ? ok(then) : first);
    answered = true;
  });
}

async function failure(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected the call to fail");
}

const TEXT = 'vllm:num_requests_running{model_name="m"} 1\n# é and ✓ survive any split\n';

describe("Http1GetClient", () => {
  it("sends one well-formed GET and reads a content-length answer split at every byte", async () => {
    const answer = ok(TEXT) as Buffer;
    const server = await rawServer((conn) => {
      void writeApart(
        conn.socket,
        [...answer].map((b) => Buffer.from([b])),
      );
    });
    const c = client(server.port);
    const res = await c.get("/metrics", "text/plain; version=0.0.4", 1024).done;
    expect(res).toEqual({ statusCode: 200, text: TEXT });
    expect(server.conns[0]!.requests[0]).toBe(
      `GET /metrics HTTP/1.1\r\nhost: 127.0.0.1:${server.port}\r\naccept: text/plain; version=0.0.4\r\nuser-agent: switchyard`,
    );
  });

  it("reads a chunked answer with extensions and trailers, split across reads", async () => {
    const body = Buffer.from(TEXT);
    const a = body.subarray(0, 7);
    const b = body.subarray(7);
    const server = await rawServer((conn) => {
      void writeApart(conn.socket, [
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r",
        `\n${a.length.toString(16)};ext=1\r\n`,
        a,
        "\r",
        `\n${b.length.toString(16).toUpperCase()}\r\n`,
        Buffer.concat([b, Buffer.from("\r\n0\r\nx-trailer: 1\r")]),
        "\n\r\n",
      ]);
    });
    const c = client(server.port);
    expect(await c.get("/metrics", "text/plain", 1024).done).toEqual({ statusCode: 200, text: TEXT });
    // The connection is reused for the next call.
    expect(await c.get("/metrics", "text/plain", 1024).done).toEqual({ statusCode: 200, text: TEXT });
    expect(server.conns).toHaveLength(1);
  });

  it("keeps one connection across calls and runs queued calls in order", async () => {
    const server = await rawServer((conn, index) => conn.socket.write(ok(`answer ${index}`)));
    const c = client(server.port);
    const calls = [0, 1, 2].map(() => c.get("/metrics", "text/plain", 1024));
    const texts = (await Promise.all(calls.map((x) => x.done))).map((r) => r.text);
    expect(texts).toEqual(["answer 0", "answer 1", "answer 2"]);
    expect(server.conns).toHaveLength(1);
  });

  it("sends a GET once more on a fresh connection when the server closed the reused one without a byte", async () => {
    // The server answers the first request of a connection and closes on the second: its idle close racing our write.
    const server = await rawServer((conn, index) => {
      if (index === 0) conn.socket.write(ok("first"));
      else conn.socket.destroy();
    });
    const c = client(server.port);
    expect((await c.get("/m", "text/plain", 1024).done).text).toBe("first");
    expect((await c.get("/m", "text/plain", 1024).done).text).toBe("first");
    expect(server.conns).toHaveLength(2);
  });

  it("does not repeat a GET on a fresh connection, nor one whose answer had begun", async () => {
    const silent = await rawServer((conn) => conn.socket.destroy());
    const err = await failure(client(silent.port).get("/m", "text/plain", 1024).done);
    expect(err).toBeInstanceOf(GetError);
    expect((err as GetError).code).toBe("SY_HTTP_CLOSED");
    expect(silent.conns).toHaveLength(1);

    const half = await rawServer((conn, index) => {
      if (index === 0) conn.socket.write(ok("first"));
      else conn.socket.end("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc");
    });
    const c = client(half.port);
    await c.get("/m", "text/plain", 1024).done;
    const cut = await failure(c.get("/m", "text/plain", 1024).done);
    expect((cut as GetError).code).toBe("SY_HTTP_CLOSED");
    expect(cut.message).toMatch(/mid-answer/);
    expect(half.conns).toHaveLength(1);
  });

  it("opens a new connection after `connection: close`, after HTTP/1.0, and after bytes nobody asked for", async () => {
    for (const answer of [
      ok("x", "connection: close\r\n"),
      "HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\nx",
      Buffer.concat([ok("x") as Buffer, Buffer.from("HTTP/1.1 200 OK\r\n")]),
    ]) {
      const server = await rawServer((conn) => conn.socket.write(answer));
      const c = client(server.port);
      expect((await c.get("/m", "text/plain", 1024).done).text).toBe("x");
      expect((await c.get("/m", "text/plain", 1024).done).text).toBe("x");
      expect(server.conns).toHaveLength(2);
    }
  });

  it("reads a body without framing until the server closes", async () => {
    const server = await rawServer(
      (conn) => void writeApart(conn.socket, ["HTTP/1.1 200 OK\r\n\r\nab", "cd"]).then(() => conn.socket.end()),
    );
    expect(await client(server.port).get("/m", "text/plain", 1024).done).toEqual({ statusCode: 200, text: "abcd" });
  });

  it("refuses a 200 body over the call's limit in every framing, and the client keeps working", async () => {
    const big = "y".repeat(2048);
    const answers = [
      ok(big),
      `HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n400\r\n${big.slice(0, 1024)}\r\n400\r\n${big.slice(1024)}\r\n0\r\n\r\n`,
      `HTTP/1.1 200 OK\r\n\r\n${big}`,
    ];
    for (const answer of answers) {
      const server = await firstThen(answer, "small");
      const c = client(server.port);
      const err = await failure(c.get("/m", "text/plain", 1500).done);
      expect((err as GetError).code).toBe("SY_HTTP_BODY_TOO_LARGE");
      expect(err.message).toContain("1500 bytes");
      expect((await c.get("/m", "text/plain", 1500).done).text).toBe("small");
    }
  });

  it("drains a non-200 body to reuse the connection, and reports a huge one without reading it", async () => {
    let n = 0;
    const server = await rawServer((conn) => {
      const index = n++;
      if (index === 0) conn.socket.write(`HTTP/1.1 503 Busy\r\ncontent-length: 5\r\n\r\nbusy!`);
      else if (index === 1) conn.socket.write(`HTTP/1.1 500 Oops\r\ncontent-length: ${ERROR_BODY_LIMIT + 1}\r\n\r\n`);
      else conn.socket.write(ok("fine"));
    });
    const c = client(server.port);
    expect(await c.get("/m", "text/plain", 1024).done).toEqual({ statusCode: 503, text: "" });
    expect(await c.get("/m", "text/plain", 1024).done).toEqual({ statusCode: 500, text: "" });
    expect(server.conns).toHaveLength(1);
    // The 500's body was never read, so its connection was dropped.
    expect(await c.get("/m", "text/plain", 1024).done).toEqual({ statusCode: 200, text: "fine" });
    expect(server.conns).toHaveLength(2);
  });

  it("skips 100 Continue and 103 Early Hints, and answers 204 without a body", async () => {
    const server = await rawServer((conn, index) => {
      if (index === 0)
        void writeApart(conn.socket, [
          "HTTP/1.1 100 Continue\r\n\r\n",
          "HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n",
          ok("done"),
        ]);
      else conn.socket.write("HTTP/1.1 204 No Content\r\ncontent-length: 7\r\n\r\n");
    });
    const c = client(server.port);
    expect(await c.get("/m", "text/plain", 1024).done).toEqual({ statusCode: 200, text: "done" });
    expect(await c.get("/m", "text/plain", 1024).done).toEqual({ statusCode: 204, text: "" });
  });

  it.each([
    ["a status line that is not HTTP", "SSH-2.0-OpenSSH\r\n\r\n", /not an HTTP\/1.x status line/],
    ["101 to a plain GET", "HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\n\r\n", /101/],
    [
      "headers past the bound",
      `HTTP/1.1 200 OK\r\nx: ${"a".repeat(MAX_HEADER_BYTES)}\r\n\r\n`,
      /larger than 16384 bytes/,
    ],
    ["a header line without a colon", "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", /malformed header line/],
    ["obs-fold", "HTTP/1.1 200 OK\r\ncontent-length: 1\r\n folded\r\n\r\nx", /malformed header line/],
    ["a negative content-length", "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", /invalid content-length/],
    [
      "two different content-lengths",
      "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nxx",
      /two different/,
    ],
    [
      "both framings",
      "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n",
      /both transfer-encoding/,
    ],
    ["gzip", "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n", /unsupported transfer-encoding/],
    ["a bad chunk size", "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", /invalid chunk size/],
    [
      "an endless chunk-size line",
      `HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1${"0".repeat(2000)}`,
      /longer than 1024 bytes/,
    ],
    [
      "chunk data without its CRLF",
      "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\nxy",
      /not followed by CRLF/,
    ],
  ])("fails with SY_HTTP_PROTOCOL on %s and then works on a new connection", async (_name, bad, message) => {
    const server = await firstThen(bad, "good");
    const c = client(server.port);
    const err = await failure(c.get("/m", "text/plain", 1024).done);
    expect((err as GetError).code).toBe("SY_HTTP_PROTOCOL");
    expect(err.message).toMatch(message);
    expect((await c.get("/m", "text/plain", 1024).done).text).toBe("good");
    expect(server.conns).toHaveLength(2);
  });

  it("fails a refused connect with Node's own code, connecting until then", async () => {
    const server = await rawServer(() => {});
    const port = server.port;
    await server.close();
    servers.length = 0;
    const call = client(port).get("/m", "text/plain", 1024);
    expect(call.connecting).toBe(true);
    const err = await failure(call.done);
    expect((err as { code?: string }).code).toBe("ECONNREFUSED");
  });

  it("abort() of a call in flight closes its connection, fails it with the reason, and runs the next call", async () => {
    const server = await rawServer((conn, _index, connIndex) => {
      if (connIndex > 0) conn.socket.write(ok("next"));
      // The first connection never answers.
    });
    const c = client(server.port);
    const hung = c.get("/m", "text/plain", 1024);
    const queued = c.get("/m", "text/plain", 1024);
    const dropped = c.get("/m", "text/plain", 1024);
    await expect.poll(() => server.conns[0]?.requests.length ?? 0).toBe(1);
    expect(hung.connecting).toBe(false);
    const reason = new Error("deadline");
    dropped.abort(new Error("not wanted"));
    hung.abort(reason);
    expect(await failure(hung.done)).toBe(reason);
    expect((await failure(dropped.done)).message).toBe("not wanted");
    expect((await queued.done).text).toBe("next");
    expect(hung.reason).toBe(reason);
    await expect.poll(() => server.conns[0]!.socket.closed).toBe(true);
    expect(server.conns).toHaveLength(2);
    expect(server.conns[1]!.requests).toHaveLength(1);
  });

  it("destroy() fails every call, closes the connection, and refuses later calls", async () => {
    const server = await rawServer(() => {});
    const c = client(server.port);
    const a = c.get("/m", "text/plain", 1024);
    const b = c.get("/m", "text/plain", 1024);
    await expect.poll(() => server.conns[0]?.requests.length ?? 0).toBe(1);
    await c.destroy();
    for (const call of [a, b]) expect(((await failure(call.done)) as GetError).code).toBe("SY_HTTP_DESTROYED");
    expect(((await failure(c.get("/m", "text/plain", 1).done)) as GetError).code).toBe("SY_HTTP_DESTROYED");
    await expect.poll(() => server.conns[0]!.socket.closed).toBe(true);
  });

  // The idle timer runs on a fake clock (timers and performance.now()), advanced by hand between real GETs, so no
  // assertion depends on how fast this machine is.
  it("keeps a connection that is used more often than the keep-alive time, past that time", async () => {
    const server = await rawServer((conn) => conn.socket.write(ok("x")));
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    try {
      const c = client(server.port, 2_000);
      // 3 s of use, a GET every 300 ms: only a gap of a whole keep-alive time may close it.
      for (let i = 0; i < 10; i++) {
        await c.get("/m", "text/plain", 1024).done;
        vi.advanceTimersByTime(300);
      }
      expect(server.conns).toHaveLength(1);
      expect(server.conns[0]!.requests).toHaveLength(10);
      expect(server.conns[0]!.socket.closed).toBe(false);
      // Then a whole keep-alive time without a GET closes it.
      vi.advanceTimersByTime(2_000);
      await vi.waitFor(() => expect(server.conns[0]!.socket.closed).toBe(true));
    } finally {
      vi.useRealTimers();
    }
  });

  it("closes an idle connection after the keep-alive timeout and reconnects for the next call", async () => {
    const server = await rawServer((conn) => conn.socket.write(ok("x")));
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    try {
      const c = client(server.port, 30);
      await c.get("/m", "text/plain", 1024).done;
      vi.advanceTimersByTime(29);
      expect(server.conns[0]!.socket.closed).toBe(false);
      vi.advanceTimersByTime(1);
      await vi.waitFor(() => expect(server.conns[0]!.socket.closed).toBe(true));
      expect((await c.get("/m", "text/plain", 1024).done).text).toBe("x");
      expect(server.conns).toHaveLength(2);
    } finally {
      vi.useRealTimers();
    }
  });
});
