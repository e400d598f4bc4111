/**
 * `switchyard`: the package's main entry (package.json `exports["."]`). A plugin pack's own EPP binary registers its
 * types (`switchyard/plugins`) and then runs the stock command line through `main`, as a GIE out-of-tree build wraps
 * GIE's runner (docs/architecture.md, "Public API").
 */
export { type Command, main } from "./cli/main.js";
export * from "./plugins.js";
