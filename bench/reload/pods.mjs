// The model servers of bench/reload/run.ts, in their own process so that a burst of scrapes never delays the
// bench's own client. One HTTP listener on every IPv4 address (`0.0.0.0`: a socket bound to 127.0.0.1 does not
// accept connections to 127.1.x.y) answers every pod's /metrics with a small vLLM exposition, and closes the
// connection after each answer: 20k pods kept alive would need 20k sockets on each side, over the box's fd limit.
// Prints `{"port":N}` once listening; exits when its parent goes.
import { createServer } from "node:http";

const body = [
  "# TYPE vllm:num_requests_running gauge",
  'vllm:num_requests_running{engine="0",model_name="base"} 0',
  "# TYPE vllm:num_requests_waiting gauge",
  'vllm:num_requests_waiting{engine="0",model_name="base"} 0',
  "# TYPE vllm:kv_cache_usage_perc gauge",
  'vllm:kv_cache_usage_perc{engine="0",model_name="base"} 0.1',
  'vllm:cache_config_info{block_size="16",num_gpu_blocks="2048",engine="0"} 1',
  "",
].join("\n");
let scrapes = 0;
const server = createServer((_req, res) => {
  scrapes++;
  res.writeHead(200, { "content-type": "text/plain; version=0.0.4", connection: "close" });
  res.end(body);
});
server.keepAliveTimeout = 0;
server.listen(0, "0.0.0.0", () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) process.exit(0);
}, 500).unref();
process.on("SIGTERM", () => {
  process.stderr.write(`pods: ${scrapes} scrapes served\n`);
  process.exit(0);
});
