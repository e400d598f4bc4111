import { defineConfig } from "vitest/config";

/**
 * `npm run test:vllm`: the opt-in suite against running vLLM servers (SWITCHYARD_VLLM_PODS). Kept out of `npm test`
 * because a real vLLM is not something CI or a fresh machine has; see test/vllm/real-vllm.test.ts.
 */
export default defineConfig({
  test: {
    include: ["test/vllm/**/*.test.ts"],
    pool: "forks",
    maxWorkers: 1,
    testTimeout: 300_000,
    hookTimeout: 300_000,
  },
});
