// Bundles the browser code with esbuild.
import { build } from "esbuild";
import { writeFileSync, mkdirSync } from "node:fs";

mkdirSync("dist", { recursive: true });
await build({
  entryPoints: { smoke: "test/smoke-page.ts" },
  bundle: true,
  format: "esm",
  target: "chrome120",
  outdir: "dist",
  logLevel: "warning",
});
writeFileSync("dist/smoke.html", '<!doctype html><meta charset="utf-8"><title>firesfu smoke</title><script type="module" src="smoke.js"></script>\n');
