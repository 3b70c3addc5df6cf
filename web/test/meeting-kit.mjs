// What the web-app browser tests share: opening a page as a user, signing up, waiting for a
// condition in a page, what a page receives from someone, the room grid's count, and
// axe-core's audit of the current view.
import { createRequire } from "node:module";

export const TIMEOUT = 30_000;
const require = createRequire(import.meta.url);

/** A step of the run, in `summary.steps` and on stderr. */
export function stepper(summary, started = Date.now()) {
  return (name) => {
    summary.steps.push({ name, atMs: Date.now() - started });
    console.error(`[step] ${name}`);
  };
}

export async function open(browser, url, viewport, who) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1, permissions: ["camera", "microphone", "clipboard-read", "clipboard-write"] });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("console", (m) => console.error(`[${who}] ${m.text()}`));
  page.on("pageerror", (e) => console.error(`[${who}] page error: ${e.message}`));
  await page.goto(url);
  return page;
}

export async function register(page, user) {
  await page.getByRole("heading", { name: "firesfu — realtime meetings" }).waitFor();
  await page.fill("input[name=username]", user.name);
  await page.fill("input[name=password]", user.password);
  await page.click("button[name=register]");
  await page.getByRole("heading", { name: "Rooms" }).waitFor();
}

/** The sidecar's JSON API at `url`: `api(method, path, body?, token?)` → the parsed body. */
export function apiOf(url) {
  return async (method, path, body, token) => {
    const headers = { "content-type": "application/json" };
    if (token) headers.authorization = `Bearer ${token}`;
    const res = await fetch(new URL(path, url), { method, headers, body: body ? JSON.stringify(body) : undefined });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
}

/** Creates the room `roomName` from the rooms list and joins it (her own tile shows). */
export async function createAndJoin(page, roomName) {
  await page.click("button[name=create-room]");
  await page.fill("input[name=room-name]", roomName);
  await page.getByRole("button", { name: "Create" }).click();
  await page.click("button[name=join]");
  await page.locator("article.tile").first().waitFor();
}

/** Someone's tile in `page`, by display name. */
export const tile = (page, user) => page.locator(`article.tile[data-participant="${user.name}"]`);

/** Polls `fn(arg)` in the page (it may be async) until it returns something truthy. */
export async function until(page, what, fn, arg, timeout = TIMEOUT) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await page.evaluate(fn, arg);
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** What `page` receives from `from`, once it decodes their video and gets their audio. */
export async function receives(page, from) {
  return until(page, `media from ${from.name}`, async (name) => {
    const inbound = (await window.firesfuInbound?.()) ?? [];
    const mine = inbound.filter((r) => r.participant === name);
    const video = mine.some((r) => r.kind === "video" && r.framesDecoded > 0);
    const audio = mine.some((r) => r.kind === "audio" && r.packets > 0);
    return video && audio && mine;
  }, from.name);
}

export async function roomCount(page, roomName, count) {
  await page.waitForFunction(([name, n]) => [...document.querySelectorAll("article.room-card")].some((c) =>
    c.querySelector("h3")?.textContent === name && c.querySelector(".count")?.dataset.count === String(n)),
  [roomName, count], { timeout: TIMEOUT, polling: 200 });
}

/**
 * axe-core (WCAG 2.x A and AA rules) on the page as it is; returns the serious and critical
 * violations (id, impact, the first targets) and every violation's id and impact.
 */
export async function audit(page) {
  if (!(await page.evaluate(() => "axe" in window))) await page.addScriptTag({ path: require.resolve("axe-core/axe.min.js") });
  const result = await page.evaluate(() => window.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] } }));
  const severe = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => ({ id: v.id, impact: v.impact, help: v.help, targets: v.nodes.slice(0, 5).map((n) => n.target.join(" ")) }));
  return { severe, violations: result.violations.map((v) => `${v.id} (${v.impact})`), passes: result.passes.length };
}

/** After a failure: what each page's session holds and receives, and a screenshot of each. */
export async function failureReport(pages, summary, artifacts, prefix) {
  summary.debug = [];
  for (const page of pages) {
    summary.debug.push(await page?.evaluate(async () => ({
      url: location.href, session: window.firesfuDebug?.(), inbound: await window.firesfuInbound?.(),
      stats: await window.firesfuStats?.(),
    })).catch((err) => String(err)));
  }
  for (const [i, page] of pages.entries()) {
    await page?.screenshot({ path: `${artifacts}/${prefix}-failure-${i}.png` }).catch(() => {});
  }
}
