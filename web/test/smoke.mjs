// Drives Debian's Chromium (no browser download) through the smoke page and waits until it
// decodes video from the room. Prints the page's stats as JSON; exits 1 on failure.
import { mkdirSync } from "node:fs";
import { launchChromium, servePage } from "./browser.mjs";

const [project, emulatorHost, room, session, artifacts] = process.argv.slice(2);
const [host, port] = emulatorHost.split(":");
const { server, url } = await servePage();

const browser = await launchChromium();
let ok = false;
let stats = null;
try {
  const page = await browser.newPage();
  page.on("console", (m) => console.error(`[page] ${m.text()}`));
  await page.goto(url);
  await page.waitForFunction(() => typeof window.runSmoke === "function");
  await page.evaluate((cfg) => window.runSmoke(cfg), { project, host, port: Number(port), room, session, uid: `uid-${session}` });
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    stats = await page.evaluate(() => window.smokeStats());
    const video = stats?.inbound?.find((r) => r.kind === "video" && r.framesDecoded > 0);
    const sending = stats?.outbound?.some((r) => r.kind === "video" && r.packets > 50);
    if (video && sending) { ok = true; break; }
    await new Promise((r) => setTimeout(r, 250));
  }
  if (artifacts) {
    mkdirSync(artifacts, { recursive: true });
    await page.screenshot({ path: `${artifacts}/smoke.png` });
  }
} finally {
  await browser.close();
  server.close();
}
const { answer, ...summary } = stats ?? {};
console.log(JSON.stringify({ ok, ...summary }, null, 1));
process.exit(ok ? 0 : 1);
