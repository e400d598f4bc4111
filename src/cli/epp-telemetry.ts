/**
 * Observability wiring for `switchyard epp` that needs to see scheduling and datastore types (which the
 * src/observability leaf may not import): the prefix-indexer series GIE exposes, and the PreRequest seam that
 * reports plugin durations. Kept out of epp.ts so that file stays about assembling the process.
 */
import { CHARS_PER_TOKEN } from "../common/constants.js";
import type { Endpoint } from "../datastore/types.js";
import type { EppMetrics } from "../observability/metrics.js";
import { type ConfiguredScheduler, PrefixCacheScorer } from "../scheduling/index.js";
import type {
  PluginDurationHook,
  PreRequest,
  Scheduler,
  SchedulingRequest,
  SchedulingResult,
} from "../scheduling/types.js";

/** The prefix-cache scorers of the running profile set (usually zero or one). */
export function prefixScorers(scheduler: ConfiguredScheduler): PrefixCacheScorer[] {
  return scheduler.pluginSet.plugins.filter((p): p is PrefixCacheScorer => p instanceof PrefixCacheScorer);
}

/** `inference_extension_prefix_indexer_size`: block entries over every prefix index; undefined without one. */
export function prefixIndexSize(scheduler: ConfiguredScheduler): () => number | undefined {
  const scorers = prefixScorers(scheduler);
  return () => (scorers.length === 0 ? undefined : scorers.reduce((n, s) => n + s.index.size, 0));
}

/**
 * Wraps the scheduler so every successful cycle records GIE's prefix-indexer hit ratio and hit length, read from
 * the first prefix scorer's own score (best endpoint) and its per-request hash cache: no second index lookup.
 * Without a prefix scorer the scheduler is returned unchanged.
 */
export function instrumentScheduler(scheduler: ConfiguredScheduler, metrics: EppMetrics): Scheduler {
  const scorer = prefixScorers(scheduler)[0];
  if (scorer === undefined) return scheduler;
  const name = scorer.typedName.name;
  return {
    schedule(request: SchedulingRequest, candidates: readonly Endpoint[]): SchedulingResult {
      const result = scheduler.schedule(request, candidates);
      let best = -1;
      const scores = result.scoresOf(name);
      if (scores !== undefined) for (let i = 0; i < scores.length; i++) if (scores[i]! > best) best = scores[i]!;
      // The scorer is not in the running profile, or there was no prompt text to hash.
      if (best < 0) return result;
      const blocks = scorer.hashesFor(request, candidates).length;
      if (blocks === 0) return result;
      metrics.prefixHitRatio.observe(best);
      metrics.prefixHitBytes.observe(Math.round(best * blocks) * blockChars(scorer, candidates));
      return result;
    },
  };
}

/** The scorer's block length in characters, auto-tuned from vLLM's block size exactly as the scorer does. */
function blockChars(scorer: PrefixCacheScorer, endpoints: readonly Endpoint[]): number {
  if (scorer.params.autoTune)
    for (const e of endpoints) {
      const bs = e.metrics?.cacheBlockSize ?? 0;
      if (bs > 0) return bs * CHARS_PER_TOKEN;
    }
  return scorer.params.blockChars;
}

/**
 * One PreRequest that runs every configured PreRequest plugin through the scheduler, which times each one into
 * `inference_extension_plugin_duration_seconds{extension_point="PreRequest"}`.
 */
export function timedPreRequest(scheduler: ConfiguredScheduler): readonly PreRequest[] {
  if (scheduler.preRequestPlugins.length === 0) return [];
  return [
    {
      typedName: { type: "pre-request-chain", name: scheduler.profile },
      preRequest: (request, chosen) => scheduler.preRequest(request, chosen),
    },
  ];
}

/**
 * The scheduler's plugin-duration hook, feeding `inference_extension_plugin_duration_seconds`: the scheduler
 * resolves each plugin's histogram child once, at start-up.
 */
export function pluginDurationRecorder(metrics: EppMetrics): PluginDurationHook {
  return (point, type, name) => {
    const child = metrics.pluginDuration.labels({ extension_point: point, plugin_type: type, plugin_name: name });
    return (seconds) => child.observe(seconds);
  };
}
