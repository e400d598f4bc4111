import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Opt-in, outside npm test (so CI never skips them): real vLLM servers (`npm run test:vllm`) and measurements
    // of third-party behaviour (`npm run measure:gie-ha`).
    exclude: ["test/vllm/**", "test/measure/**", "**/node_modules/**"],
    pool: "forks",
    // 2-core machines: e2e files spawn several processes each, so keep file parallelism low.
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // The second reporter prints one line naming the tools whose tests were skipped (test/helpers/tools.ts).
    reporters: ["default", "./test/helpers/skip-reporter.ts"],
  },
});
