/**
 * /metrics in vLLM's names and label shapes, Prometheus text format 0.0.4, written by hand: a scrape every 50 ms
 * from several EPPs should cost microseconds, and prom-client's registry machinery is far more than this needs.
 * Label order is vLLM 0.32's (alphabetical: engine, then model_name). Counters are exposed as
 * `<name>_total` with TYPE on the `_total` name, as prometheus_client does in 0.0.4; `_created` samples are omitted.
 */
import type { Engine } from "./engine.js";

export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Escapes a label value per the exposition format (backslash, double quote, newline). */
export function escapeLabel(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === "\n" ? "\\n" : `\\${c}`));
}

function header(out: string[], name: string, type: string, help: string): void {
  out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
}

export function renderMetrics(engine: Engine, now = performance.now()): string {
  const o = engine.options;
  const model = escapeLabel(o.servedModelNames[0]!);
  // vLLM 0.32 emits labels in alphabetical order: engine before model_name (docs/design/model-servers.md §8).
  const labels = `engine="0",model_name="${model}"`;
  const s = engine.stats;
  const out: string[] = [];
  const counts = engine.gaugeCounts(now);

  header(out, "vllm:num_requests_running", "gauge", "Number of requests in model execution batches.");
  for (const [rank, c] of counts.entries())
    if (c !== undefined) out.push(`vllm:num_requests_running{engine="${rank}",model_name="${model}"} ${c.running}`);
  header(out, "vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.");
  for (const [rank, c] of counts.entries())
    if (c !== undefined) out.push(`vllm:num_requests_waiting{engine="${rank}",model_name="${model}"} ${c.waiting}`);

  const kvName = `vllm:${o.kvCacheMetricName}`;
  header(out, kvName, "gauge", "KV-cache usage. 1 means 100 percent usage.");
  // One KV cache is modelled; each data-parallel engine reports its usage.
  for (const [rank, c] of counts.entries())
    if (c !== undefined) out.push(`${kvName}{engine="${rank}",model_name="${model}"} ${engine.kv.usage}`);

  if (engine.lora !== undefined) {
    header(out, "vllm:lora_requests_info", "gauge", "Running stats on lora requests.");
    for (const series of engine.loraSeries()) {
      out.push(
        `vllm:lora_requests_info{max_lora="${o.maxLoras}",running_lora_adapters="${escapeLabel(series.running)}",waiting_lora_adapters="${escapeLabel(series.waiting)}"} ${series.timestamp}`,
      );
    }
  }

  header(out, "vllm:cache_config_info", "gauge", "Information of the LLMEngine CacheConfig");
  // Like a data-parallel vLLM 0.32, every engine reports the server's total block count.
  for (let rank = 0; rank < o.dataParallelSize; rank++)
    out.push(
      `vllm:cache_config_info{block_size="${o.blockSize}",cache_dtype="auto",enable_prefix_caching="${o.enablePrefixCaching ? "True" : "False"}",engine="${rank}",gpu_memory_utilization="0.9",num_cpu_blocks="0",num_gpu_blocks="${o.kvCacheSize}"} 1.0`,
    );

  header(out, "vllm:num_preemptions_total", "counter", "Cumulative number of preemption from the engine.");
  out.push(`vllm:num_preemptions_total{${labels}} ${s.preemptions}`);
  header(out, "vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.");
  out.push(`vllm:prompt_tokens_total{${labels}} ${s.promptTokens}`);
  header(out, "vllm:generation_tokens_total", "counter", "Number of generation tokens processed.");
  out.push(`vllm:generation_tokens_total{${labels}} ${s.generationTokens}`);
  header(
    out,
    "vllm:prefix_cache_queries_total",
    "counter",
    "Prefix cache queries, in terms of number of queried tokens.",
  );
  out.push(`vllm:prefix_cache_queries_total{${labels}} ${s.prefixCacheQueries}`);
  header(out, "vllm:prefix_cache_hits_total", "counter", "Prefix cache hits, in terms of number of cached tokens.");
  out.push(`vllm:prefix_cache_hits_total{${labels}} ${s.prefixCacheHits}`);
  header(out, "vllm:request_success_total", "counter", "Count of successfully processed requests.");
  out.push(`vllm:request_success_total{${labels},finished_reason="stop"} ${s.successStop}`);
  out.push(`vllm:request_success_total{${labels},finished_reason="length"} ${s.successLength}`);

  header(out, "vllm:time_to_first_token_seconds", "histogram", "Histogram of time to first token in seconds.");
  s.ttft.render(out, "vllm:time_to_first_token_seconds", labels);
  header(out, "vllm:inter_token_latency_seconds", "histogram", "Histogram of inter-token latency in seconds.");
  s.itl.render(out, "vllm:inter_token_latency_seconds", labels);
  header(out, "vllm:e2e_request_latency_seconds", "histogram", "Histogram of e2e request latency in seconds.");
  s.e2e.render(out, "vllm:e2e_request_latency_seconds", labels);
  header(out, "vllm:request_queue_time_seconds", "histogram", "Histogram of time spent in WAITING phase for request.");
  s.queueTime.render(out, "vllm:request_queue_time_seconds", labels);

  out.push("");
  return out.join("\n");
}
