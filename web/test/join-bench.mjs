// Join latency with a real browser: Chromium joins a room N times; the page measures offer
// written → answer applied and offer written → first RTP of the room's media.
import { launchChromium, servePage } from "./browser.mjs";

const [project, emulatorHost, room, joins, iceServersJson] = process.argv.slice(2);
const iceServers = iceServersJson ? JSON.parse(iceServersJson) : [];
const [host, port] = emulatorHost.split(":");
const { server, url } = await servePage();
const browser = await launchChromium();
try {
  const page = await browser.newPage();
  page.on("console", (m) => console.error(`[page] ${m.text()}`));
  await page.goto(url);
  await page.waitForFunction(() => typeof window.benchJoins === "function");
  const result = await page.evaluate(([cfg, n]) => window.benchJoins(cfg, n),
    [{ project, host, port: Number(port), room, session: `chromium-bench-${Date.now()}`, uid: "uid-chromium-bench", iceServers }, Number(joins)]);
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
  server.close();
}
