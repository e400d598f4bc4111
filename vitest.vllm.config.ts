import { defineConfig } from "vitest/config";

/**
 * Opt-in suites kept out of `npm test`: `npm run test:vllm` against running vLLM servers (SWITCHYARD_VLLM_PODS; a real
 * vLLM is not something CI or a fresh machine has, test/vllm/real-vllm.test.ts), and `npm run measure:gie-ha`, which
 * measures GIE's own EPP through an API-server outage for the README (test/measure/gie-ha.test.ts).
 */
export default defineConfig({
  test: {
    include: [process.env.SWITCHYARD_OPTIN === "measure" ? "test/measure/**/*.test.ts" : "test/vllm/**/*.test.ts"],
    pool: "forks",
    maxWorkers: 1,
    testTimeout: 300_000,
    hookTimeout: 300_000,
  },
});
