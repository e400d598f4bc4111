import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Real vLLM servers are opt-in: `npm run test:vllm` (vitest.vllm.config.ts).
    exclude: ["test/vllm/**", "**/node_modules/**"],
    pool: "forks",
    // 2-core machines: e2e files spawn several processes each, so keep file parallelism low.
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // The second reporter prints one line naming the tools whose tests were skipped (test/helpers/tools.ts).
    reporters: ["default", "./test/helpers/skip-reporter.ts"],
  },
});
