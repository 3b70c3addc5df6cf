// Join latency with a real browser: Chromium joins a room N times; the page measures offer
// written → answer applied and offer written → first RTP of the room's media.
import http from "node:http";
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

const [project, emulatorHost, room, joins] = process.argv.slice(2);
const [host, port] = emulatorHost.split(":");
const files = { "/smoke.html": "text/html", "/smoke.js": "text/javascript" };
const server = http.createServer((req, res) => {
  const type = files[req.url];
  if (!type) { res.writeHead(404).end(); return; }
  res.writeHead(200, { "content-type": type }).end(readFileSync(new URL(`../dist${req.url}`, import.meta.url)));
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"],
});
try {
  const page = await browser.newPage();
  page.on("console", (m) => console.error(`[page] ${m.text()}`));
  await page.goto(`http://127.0.0.1:${server.address().port}/smoke.html`);
  await page.waitForFunction(() => typeof window.benchJoins === "function");
  const result = await page.evaluate(([cfg, n]) => window.benchJoins(cfg, n),
    [{ project, host, port: Number(port), room, session: "chromium-bench", uid: "uid-chromium-bench" }, Number(joins)]);
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
  server.close();
}
