/**
 * The fleet simulation's building blocks: virtual time runs events in order, the `direct` scrape shortcut equals
 * the real /metrics text through the EPP's real extractor, and the TTFT-slowdown denominator equals what the engine
 * actually does with the request alone on an idle 1x pod.
 */
import { describe, expect, it } from "vitest";
import { H100_SCALED } from "../../src/bench/fleet.js";
import { DEFAULT_WORKLOAD } from "../../src/bench/workload.js";
import { EventQueue } from "../../src/fleetsim/clock.js";
import { VirtualPod } from "../../src/fleetsim/pods.js";
import { prepareTrace } from "../../src/fleetsim/run.js";
import { aloneTtftMs } from "../../src/fleetsim/trace.js";
import { fleet } from "../../src/local/stack.js";
import type { SequenceInfo } from "../../src/sim/engine.js";

describe("EventQueue", () => {
  it("runs events in time order, same-time events in scheduling order, and skips cancelled ones", () => {
    const q = new EventQueue();
    const seen: string[] = [];
    q.at(30, () => seen.push(`c@${q.now}`));
    q.at(10, () => {
      seen.push(`a@${q.now}`);
      q.after(0, () => seen.push(`a2@${q.now}`));
      q.at(5, () => seen.push(`past@${q.now}`));
    });
    q.at(10, () => seen.push(`b@${q.now}`));
    const dead = q.at(20, () => seen.push("cancelled"));
    dead.cancelled = true;
    q.run();
    expect(seen).toEqual(["a@10", "b@10", "a2@10", "past@10", "c@30"]);
  });
});

const [loraPod] = fleet({ count: 1, addressPrefix: "10.0.0", port: 8000, loras: DEFAULT_WORKLOAD.loras, loraPods: 1 });

describe("VirtualPod scrape", () => {
  it("direct gauges equal the rendered /metrics parsed by the EPP's extractor, all through a busy run", () => {
    const q = new EventQueue();
    const pod = new VirtualPod(loraPod!, H100_SCALED, q, 7);
    const trace = prepareTrace({ ...DEFAULT_WORKLOAD, seed: 3, loraShare: 0.5 }, 60, H100_SCALED);
    const sink = { onToken() {}, onFinish() {} };
    let t = 0;
    for (let i = 0; i < trace.length; i++) {
      t += trace.get(i).gap * 150;
      const req = trace.get(i).engine!;
      q.at(t, () => pod.engine.submit(req, sink));
    }
    let compared = 0;
    let busy = 0;
    const check = (): void => {
      const direct = pod.scrape("direct", q.now);
      const text = pod.scrape("text", q.now);
      expect(direct).toEqual(text);
      compared++;
      if (direct.waitingQueueSize > 0 && direct.activeModels.size > 0) busy++;
      if (q.pending > 1) q.after(37, check);
    };
    q.at(0, check);
    q.run();
    expect(compared).toBeGreaterThan(100);
    // The comparison saw queues and resident adapters, not only an idle pod.
    expect(busy).toBeGreaterThan(5);
  }, 30_000);
});

describe("TTFT alone (the slowdown denominator)", () => {
  it("matches the engine's first token for the request alone on an idle speed-1 pod with cold caches", () => {
    const trace = prepareTrace({ ...DEFAULT_WORKLOAD, seed: 11, loraShare: 0.3 }, 40, H100_SCALED);
    let loras = 0;
    for (let i = 0; i < trace.length; i++) {
      const req = trace.get(i).engine!;
      if (req.lora !== undefined) loras++;
      const q = new EventQueue();
      const pod = new VirtualPod({ ...loraPod!, speed: 1 }, H100_SCALED, q, i);
      let ttft = Number.NaN;
      q.at(100, () =>
        pod.engine.submit(req, {
          onToken(seq: SequenceInfo) {
            if (seq.generated === 1) ttft = q.now - 100;
          },
          onFinish() {},
        }),
      );
      q.run();
      expect(ttft).toBeCloseTo(aloneTtftMs(H100_SCALED, req), 6);
    }
    expect(loras).toBeGreaterThan(3);
  }, 30_000);
});
