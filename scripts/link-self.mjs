// Makes `npx switchyard …` inside a checkout run this checkout's build. Without a local bin npx treats
// "switchyard" as a package to install: it packs this directory into its cache and runs `prepare` (a full
// TypeScript build, ~26 s), and an interrupted first run leaves that cache entry broken. npm does not link a
// project's own bin into its node_modules/.bin, so `prepare` does it (after `npm ci` / `npm install`).
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { join, relative } from "node:path";

const root = process.cwd();
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
// Only in a checkout being set up (node_modules present), never inside a consumer's install of this package.
if (!existsSync(join(root, "node_modules")) || root.includes(`${"node_modules"}/`)) process.exit(0);
const binDir = join(root, "node_modules", ".bin");
mkdirSync(binDir, { recursive: true });
for (const [name, target] of Object.entries(pkg.bin ?? {})) {
  const link = join(binDir, name);
  const dest = join(root, target);
  rmSync(link, { force: true });
  symlinkSync(relative(binDir, dest), link);
  if (existsSync(dest)) chmodSync(dest, 0o755);
}
