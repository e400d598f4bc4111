// `node bench/reload/launch.mjs <checkout> <epp flags…>`: the EPP of one checkout's compiled dist/, started the way
// `switchyard epp` starts it but without the metrics scraper (startEpp's `scrape: false` override, which both the
// baseline and the new build have). bench/reload/run.ts uses it for RELOAD_SCRAPE=off: the reload path alone
// (file source, parser thread, datastore, listeners), without a scrape loop's own work in the measurement.
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [root, ...argv] = process.argv.slice(2);
const { startEpp } = await import(pathToFileURL(join(root, "dist", "cli", "epp.js")).href);
const epp = await startEpp(argv, { scrape: false });
process.once("SIGTERM", () => {
  epp.stop(1000).then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
