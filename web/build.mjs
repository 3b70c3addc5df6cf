// Bundles the browser code with esbuild: the meeting app (dist/index.html, app.js, app.css)
// and the page of the Chromium smoke test (dist/smoke.html, smoke.js).
import { build } from "esbuild";
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";

mkdirSync("dist", { recursive: true });
await build({
  entryPoints: { app: "src/app.ts", smoke: "test/smoke-page.ts" },
  bundle: true,
  format: "esm",
  target: "chrome120",
  outdir: "dist",
  minify: process.env.FIRESFU_WEB_MINIFY !== "false",
  sourcemap: "linked",
  logLevel: "warning",
});
copyFileSync("index.html", "dist/index.html");
copyFileSync("src/style.css", "dist/app.css");
writeFileSync("dist/smoke.html", '<!doctype html><meta charset="utf-8"><title>firesfu smoke</title><script type="module" src="smoke.js"></script>\n');
