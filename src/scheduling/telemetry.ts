/**
 * Scheduling telemetry that needs to see plugin internals, kept inside scheduling so a request's data flows down
 * once: the scheduler calls the observer it was built with (types.ts `SchedulingObserver`) instead of the CLI
 * wrapping it and re-running plugins (docs/architecture.md, "Telemetry"). GIE records the same series from inside
 * its prefix plugin (docs/design/scheduling.md §3).
 */
import { CHARS_PER_TOKEN } from "../common/constants.js";
import type { Endpoint } from "../datastore/types.js";
import { PrefixCacheScorer } from "./plugins/prefix-cache.js";
import type { PluginSet, Scheduler, SchedulingObserver, SchedulingRequest, SchedulingResult } from "./types.js";

/** The prefix-cache scorers of a plugin set (usually zero or one). */
export function prefixScorers(set: PluginSet): PrefixCacheScorer[] {
  return set.plugins.filter((p): p is PrefixCacheScorer => p instanceof PrefixCacheScorer);
}

/** `inference_extension_prefix_indexer_size`: block entries over every prefix index; undefined without one. */
export function prefixIndexSize(scheduler: Pick<Scheduler, "pluginSet">): () => number | undefined {
  const scorers = prefixScorers(scheduler.pluginSet);
  return () => (scorers.length === 0 ? undefined : scorers.reduce((n, s) => n + s.index.size, 0));
}

/** Runs after a successful cycle, before the result is returned. */
export type CycleReporter = (
  request: SchedulingRequest,
  candidates: readonly Endpoint[],
  result: SchedulingResult,
) => void;

/**
 * The prefix-match reporter for `observer.prefixMatch`, or undefined when nobody listens or no prefix scorer is
 * configured. It reads the first prefix scorer's own score (best endpoint) and its per-request hash cache: no
 * second index lookup.
 */
export function prefixMatchReporter(set: PluginSet, observer: SchedulingObserver): CycleReporter | undefined {
  const report = observer.prefixMatch;
  const scorer = prefixScorers(set)[0];
  if (report === undefined || scorer === undefined) return undefined;
  const name = scorer.typedName.name;
  return (request, candidates, result) => {
    const best = result.bestScoreOf(name);
    // The scorer is not in the running profile, or there was no prompt text to hash.
    if (best === undefined || best < 0) return;
    const blocks = scorer.hashesFor(request, candidates).length;
    if (blocks === 0) return;
    report(best, Math.round(best * blocks) * blockChars(scorer, candidates));
  };
}

/** The scorer's block length in characters, auto-tuned from vLLM's block size exactly as the scorer does. */
function blockChars(scorer: PrefixCacheScorer, endpoints: readonly Endpoint[]): number {
  // An indexed loop: this runs per request over the whole pool when no pod reports a block size, and for-of's
  // iterator results were 30 % of a 1,000-endpoint cycle's garbage (bench/README.md, "Scraping at scale").
  if (scorer.params.autoTune)
    for (let i = 0; i < endpoints.length; i++) {
      const bs = endpoints[i]!.metrics?.cacheBlockSize ?? 0;
      if (bs > 0) return bs * CHARS_PER_TOKEN;
    }
  return scorer.params.blockChars;
}
