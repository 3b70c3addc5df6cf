// The web app's presentation features as three people use them (Debian's Chromium): Alice on
// a desktop shares a browser tab that shows fine text and 1-px stripes (her Chromium selects
// the tab by title, as a user would in the picker; her microphone plays speech; three fake
// cameras), Bob on a phone, Carol on a desktop. Each step asserts what a user sees; axe-core
// audits every view. Prints a JSON summary; exits 1 on the first failure. Screenshots of the
// presenter layout go to the artifacts folder.
import { mkdirSync } from "node:fs";
import { launchChromium } from "./browser.mjs";
import { audit, failureReport, open as openPage, receives, register, stepper, tile, until } from "./meeting-kit.mjs";

const [url, artifacts] = process.argv.slice(2);
mkdirSync(artifacts, { recursive: true });
const suffix = Math.random().toString(36).slice(2, 8);
const alice = { name: `alice-${suffix}`, password: "correct horse battery" };
const bob = { name: `bob-${suffix}`, password: "staple battery horse" };
const carol = { name: `carol-${suffix}`, password: "battery staple correct" };
const summary = { steps: [], audits: {} };
const step = stepper(summary);
const open = (browser, viewport, who) => openPage(browser, url, viewport, who);
const PATTERN_TAB = "firesfu-shared-slides";
const desktop = { width: 1280, height: 800 };
const phone = { width: 390, height: 844 };

/** A slide of fine detail at 1920 × 1080: 1-px stripes and checkerboard, small text, and a
 * square that blinks (a captured tab sends frames only when it repaints). */
const PATTERN = `<!doctype html><html lang="en"><head><title>${PATTERN_TAB}</title><style>
html,body{margin:0;background:#fff;overflow:hidden;font:14px sans-serif}
#stripes{position:fixed;left:200px;top:200px;width:400px;height:200px;background:repeating-linear-gradient(90deg,#000 0 1px,#fff 1px 2px)}
#checks{position:fixed;left:800px;top:200px;width:400px;height:200px;background:repeating-conic-gradient(#000 0 25%,#fff 0 50%) 0 0/2px 2px}
#text{position:fixed;left:200px;top:500px;width:1400px}
#tick{position:fixed;left:1860px;top:1020px;width:20px;height:20px;background:#0a0}
</style></head><body><div id="stripes"></div><div id="checks"></div>
<p id="text">${"Quarterly figures: revenue 1,204,553 — costs 987,410 — margin 17.9 %. ".repeat(12)}</p><div id="tick"></div>
<script>let on=false;setInterval(()=>{on=!on;document.getElementById("tick").style.background=on?"#0a0":"#a00"},50)</script></body></html>`;

/**
 * The detail left in the stage's video where the slide has 1-px stripes: the mean luminance
 * difference of horizontally neighbouring pixels (255 for perfect stripes; a picture scaled
 * down and up again averages them to grey, near 0). Also the frame's size.
 */
function stageDetail() {
  const video = document.querySelector('.tile[data-stage="true"] video');
  if (!video || !video.videoWidth) return null;
  const w = video.videoWidth, h = video.videoHeight;
  const canvas = new OffscreenCanvas(w, h);
  const g = canvas.getContext("2d", { willReadFrequently: true });
  g.drawImage(video, 0, 0, w, h);
  const sx = w / 1920, sy = h / 1080;
  const x = Math.round(250 * sx), y = Math.round(250 * sy), rw = Math.round(300 * sx), rh = Math.round(100 * sy);
  const px = g.getImageData(x, y, rw, rh).data;
  let sum = 0, n = 0;
  for (let row = 0; row < rh; row++) {
    for (let col = 0; col + 1 < rw; col++) {
      const i = (row * rw + col) * 4, j = i + 4;
      const l1 = 0.299 * px[i] + 0.587 * px[i + 1] + 0.114 * px[i + 2];
      const l2 = 0.299 * px[j] + 0.587 * px[j + 1] + 0.114 * px[j + 2];
      sum += Math.abs(l1 - l2);
      n++;
    }
  }
  return { width: w, height: h, contrast: Math.round(sum / n) };
}

/** Runs axe on the page; fails on serious or critical violations. */
async function audited(page, view) {
  const result = await audit(page);
  summary.audits[view] = result;
  if (result.severe.length) throw new Error(`axe: ${view} has serious/critical violations: ${JSON.stringify(result.severe)}`);
}

/** Presses Tab until the focused element matches `selector` (at most `max` presses). */
async function tabTo(page, selector, max = 40) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press("Tab");
    if (await page.evaluate((s) => document.activeElement?.matches(s) ?? false, selector)) return i + 1;
  }
  throw new Error(`${selector} not reached with the keyboard`);
}

const screenFrom = (who) => async (name) => ((await window.firesfuInbound?.()) ?? [])
  .find((r) => r.participant === name && r.source === "screen" && r.framesDecoded > 0) ?? null;

const browser = await launchChromium();
const speech = process.env.FIRESFU_SPEECH_WAV;
const aliceBrowser = await launchChromium([], speech ? [`--use-file-for-fake-audio-capture=${speech}`] : [], { shareTab: PATTERN_TAB, fakeDevices: "device-count=3" });
const pages = () => [browser, aliceBrowser].flatMap((br) => br.contexts().map((c) => c.pages()[0]));
let ok = false;
try {
  const a = await open(aliceBrowser, desktop, "alice");
  const b = await open(browser, phone, "bob");
  const c = await open(browser, desktop, "carol");

  step("axe: the landing page");
  await a.getByRole("heading", { name: "firesfu — realtime meetings" }).waitFor();
  await audited(a, "landing");

  step("all three register; axe: the rooms view");
  await Promise.all([register(a, alice), register(b, bob), register(c, carol)]);
  await audited(a, "rooms");

  step("alice creates a room; axe: the pre-join view");
  const roomName = `Review ${suffix}`;
  await a.click("button[name=create-room]");
  await a.fill("input[name=room-name]", roomName);
  await a.getByRole("button", { name: "Create" }).click();
  await a.locator("button[name=join]").waitFor();
  await audited(a, "prejoin");
  await a.click("button[name=join]");

  step("bob and carol join; everyone receives everyone");
  for (const p of [b, c]) {
    await p.locator("article.room-card", { hasText: roomName }).click();
    await p.click("button[name=join]");
  }
  await receives(a, bob);
  await receives(b, alice);
  await receives(c, alice);
  await receives(c, bob);

  step("axe: the meeting view (desktop and phone)");
  await audited(a, "meeting-desktop");
  await audited(b, "meeting-phone");

  step("alice presents a tab of fine text: bob and carol get the presenter layout");
  const slides = await (await aliceBrowser.newContext({ viewport: { width: 1920, height: 1080 } })).newPage();
  await slides.setContent(PATTERN);
  const sharedAt = Date.now();
  await a.click("button[name=share]");
  await a.locator('button[name=share][aria-pressed="true"]').waitFor();
  for (const p of [b, c]) {
    await p.locator('.grid[data-layout="stage"] .tile[data-stage="true"][data-screen="true"]').waitFor();
  }
  summary.shareTimeline = {
    answeredMs: await until(a, "alice's share answered", () => {
      const d = window.firesfuDebug();
      return d.sharing && d.answered === d.revision && d.state === "connected";
    }).then(() => Date.now() - sharedAt),
    carolSlotMs: await until(c, "a slot for alice's screen", (name) => {
      const d = window.firesfuDebug();
      const mids = (d.roster.find((p) => p.displayName === name)?.tracks ?? []).filter((t) => t.source === "screen").map((t) => t.mid);
      return Object.values(d.slots ?? {}).some((s) => s && s.displayName === name && mids.includes(s.sourceMid));
    }, alice.name).then(() => Date.now() - sharedAt),
  };
  summary.carolScreen = await until(c, "alice's screen decoded", screenFrom(), alice.name);
  summary.shareTimeline.carolDecodedMs = Date.now() - sharedAt;
  summary.carolScreenAudio = await until(c, "alice's tab audio", async (name) => ((await window.firesfuInbound?.()) ?? [])
    .find((r) => r.participant === name && r.source === "screen-audio" && r.packets > 0) ?? null, alice.name);
  summary.bobScreen = await until(b, "alice's screen decoded on the phone", screenFrom(), alice.name);
  summary.shareDecodedMs = Date.now() - sharedAt;
  // The encoder starts low and climbs: wait for the full width and sharp stripes.
  await c.evaluate((src) => { window.__detail = (0, eval)(`(${src})`); }, stageDetail.toString());
  summary.detail = await until(c, "the share at ≥ 1280 px with its 1-px stripes", () => {
    const d = window.__detail?.() ?? null;
    return d && d.width >= 1280 && d.contrast >= 96 ? d : null;
  }, null, 45_000).catch(async (e) => {
    summary.detailSeen = await c.evaluate(() => window.__detail?.());
    throw e;
  });
  summary.detailMs = Date.now() - sharedAt;
  if (await a.locator(`article.tile[data-key="self"] .badge:not([hidden])`).count() !== 1) throw new Error("alice's tile has no presenter badge");
  // The stage asks for priority, the filmstrip's thumbnails for a small layer.
  summary.carolReceive = await c.evaluate(() => window.firesfuDebug().receive);
  const prefs = Object.values(summary.carolReceive);
  if (prefs.filter((p) => p.pinned).length !== 1) throw new Error(`not one pinned slot: ${JSON.stringify(prefs)}`);
  if (prefs.some((p) => !p.pinned && p.maxHeight > 360)) throw new Error(`a thumbnail asks for more than 360 px: ${JSON.stringify(prefs)}`);
  await c.screenshot({ path: `${artifacts}/present-desktop.png` });
  await b.screenshot({ path: `${artifacts}/present-phone.png` });

  step("carol tries to present too: she is told alice presents, and alice's share goes on");
  await c.click("button[name=share]");
  await c.locator(".alert", { hasText: alice.name }).waitFor();
  summary.secondPresenterMessage = await c.locator(".alert").textContent();
  await c.locator('button[name=share][aria-pressed="false"]').waitFor();
  const framesBefore = summary.bobScreen.framesDecoded;
  await until(b, "alice's share still arriving", async ([name, n]) => ((await window.firesfuInbound?.()) ?? [])
    .some((r) => r.participant === name && r.source === "screen" && r.framesDecoded > n + 5), [alice.name, framesBefore]);

  step("the shared tab closes (the browser ends the share): everyone is back to the grid");
  await slides.close();
  await a.locator('button[name=share][aria-pressed="false"]').waitFor();
  for (const p of [a, b, c]) {
    await p.locator('.grid[data-layout="grid"]').waitFor();
    await p.locator('.tile[data-screen="true"]').waitFor({ state: "detached" });
  }

  step("bob pins carol, then unpins her; carol picks the speaker layout");
  await tile(b, carol).locator("button[name=pin]").click();
  await b.locator(`.tile[data-stage="true"][data-participant="${carol.name}"]`).waitFor();
  await tile(b, carol).locator("button[name=pin]").click();
  await b.locator('.grid[data-layout="grid"]').waitFor();
  await c.selectOption("select[name=layout]", "speaker");
  await c.locator('.grid[data-layout="stage"] .tile[data-stage="true"]:not([data-self="true"])').waitFor();
  summary.carolSpeakerStage = await c.locator('.tile[data-stage="true"]').getAttribute("data-participant");
  await c.selectOption("select[name=layout]", "grid");
  await c.locator('.grid[data-layout="grid"]').waitFor();

  step("carol raises her hand (Alt+H): alice sees it on the tile and in the people panel");
  await c.keyboard.press("Alt+KeyH");
  await c.locator('button[name=hand][aria-pressed="true"]').waitFor();
  await tile(a, carol).locator(".hand").waitFor({ state: "visible" });
  await a.click("button[name=people]");
  await a.locator(`.people li[data-participant="${carol.name}"] .hand-badge`).waitFor();
  summary.peopleOrder = await a.locator(".people li .person-name").allTextContents();
  await audited(a, "meeting-people-panel");
  await c.keyboard.press("Alt+KeyH");
  await tile(a, carol).locator(".hand").waitFor({ state: "hidden" });

  step("bob writes twice while alice's chat is closed: her badge counts 2, opening the chat clears it");
  await b.click("button[name=chat-toggle]");
  for (const n of [1, 2]) {
    await b.fill("input[name=chat]", `note ${n} from bob`);
    await b.press("input[name=chat]", "Enter");
    await b.locator(".messages .text", { hasText: `note ${n} from bob` }).waitFor();
  }
  await b.click("button[name=chat-toggle]");
  await a.waitForFunction(() => document.querySelector(".unread")?.textContent === "2" && !document.querySelector(".unread").hidden);
  await a.click("button[name=chat-toggle]");
  await a.locator(".unread").waitFor({ state: "hidden" });
  await a.locator(".messages .text", { hasText: "note 2 from bob" }).waitFor();

  step("alice mutes and keeps talking: she sees the muted hint");
  await a.click("button[name=mic]");
  await a.locator('button[name=mic][aria-pressed="true"]').waitFor();
  if (speech) await a.locator(".muted-hint").waitFor({ state: "visible" });
  await a.click("button[name=mic]");

  step("alice switches camera and microphone mid-call: same session, bob keeps decoding her");
  const before = await a.evaluate(() => window.firesfuDebug());
  await a.click("button[name=devices]");
  await a.waitForFunction(() => document.querySelectorAll("select[name=videoinput] option").length >= 2, null, { timeout: 10_000 })
    .catch(() => {});
  // Chromium's second fake camera sends 16-bit depth frames, which no encoder takes: the third.
  const cameras = await a.locator("select[name=videoinput] option").evaluateAll((os) => os.map((o) => o.value).reverse());
  const mics = await a.locator("select[name=audioinput] option").evaluateAll((os) => os.map((o) => o.value));
  if (cameras.length < 2) throw new Error(`alice has ${cameras.length} cameras listed`);
  const newCamera = cameras.find((id) => id !== before.devices.video);
  const newMic = mics.find((id) => id !== before.devices.audio);
  await a.selectOption("select[name=videoinput]", newCamera);
  await a.selectOption("select[name=audioinput]", newMic);
  await until(a, "the new devices in use", ([cam, mic]) => {
    const d = window.firesfuDebug().devices;
    return d.video === cam && d.audio === mic;
  }, [newCamera, newMic]);
  await a.getByRole("button", { name: "Close" }).click();
  const after = await a.evaluate(() => window.firesfuDebug());
  if (after.sessionId !== before.sessionId) throw new Error(`the session changed: ${before.sessionId} → ${after.sessionId}`);
  const bobHad = (await receives(b, alice)).find((r) => r.kind === "video").framesDecoded;
  await until(b, "alice's new camera", async ([name, n]) => ((await window.firesfuInbound?.()) ?? [])
    .some((r) => r.participant === name && r.kind === "video" && r.source === "camera" && r.framesDecoded > n + 20), [alice.name, bobHad]);
  summary.deviceSwitch = { session: after.sessionId, from: before.devices, to: after.devices };

  step("alice picks another speaker; her camera disappears: another one takes over, same session");
  await a.click("button[name=devices]");
  await a.waitForFunction(() => document.querySelectorAll("select[name=audiooutput] option").length >= 2, null, { timeout: 10_000 });
  const speaker = await a.locator("select[name=audiooutput] option").last().getAttribute("value");
  await a.selectOption("select[name=audiooutput]", speaker);
  await a.waitForFunction((id) => [...document.querySelectorAll(".tile audio")].every((el) => el.sinkId === id), speaker);
  await a.getByRole("button", { name: "Close" }).click();
  // What a browser does when a camera is unplugged: the track ends.
  await a.evaluate(() => document.querySelector('.tile[data-key="self"] video').srcObject.getVideoTracks()[0].dispatchEvent(new Event("ended")));
  await a.locator(".alert", { hasText: "camera was disconnected" }).waitFor();
  summary.fallbackMessage = await a.locator(".alert").textContent();
  const bobNow = (await receives(b, alice)).find((r) => r.kind === "video").framesDecoded;
  await until(b, "alice's fallback camera", async ([name, n]) => ((await window.firesfuInbound?.()) ?? [])
    .some((r) => r.participant === name && r.kind === "video" && r.framesDecoded > n + 20), [alice.name, bobNow]);
  if ((await a.evaluate(() => window.firesfuDebug().sessionId)) !== before.sessionId) throw new Error("the fallback changed the session");

  step("alice copies the invite link");
  await a.click("button[name=invite]");
  await a.locator(".alert", { hasText: "Invite link copied" }).waitFor();
  summary.invite = await a.evaluate(() => navigator.clipboard.readText());
  if (!summary.invite.endsWith(`#/rooms/${new URL(a.url()).hash.split("/").pop()}`)) throw new Error(`invite link ${summary.invite}`);

  step("carol, with the keyboard only: leaves, joins again, mutes, presents, leaves (confirming)");
  await c.click("button[name=leave]");
  await c.getByRole("heading", { name: "Rooms" }).waitFor();
  await c.locator("article.room-card", { hasText: roomName }).waitFor();
  await c.evaluate(() => document.activeElement?.blur());
  summary.keyboard = { toRoom: await tabTo(c, `article.room-card a`) };
  await c.keyboard.press("Enter");
  await c.locator("button[name=join]").waitFor();
  summary.keyboard.toJoin = await tabTo(c, "button[name=join]");
  await c.keyboard.press("Enter");
  await c.locator("button[name=mic]").waitFor();
  await receives(c, alice);
  await a.waitForFunction((name) => document.querySelector(".meeting [role=status][aria-live]")?.textContent?.includes(`${name} joined.`), carol.name);
  await c.keyboard.press("Alt+KeyA");
  await c.locator('button[name=mic][aria-pressed="true"]').waitFor();
  await c.keyboard.press("Alt+KeyS");
  await c.locator('button[name=share][aria-pressed="true"]').waitFor();
  await until(b, "carol's screen", screenFrom(), carol.name);
  summary.keyboard.toLeave = await tabTo(c, "button[name=leave]");
  await c.keyboard.press("Enter");
  await c.getByRole("dialog", { name: "Leave while presenting?" }).waitFor();
  await tabTo(c, "dialog button.danger", 5);
  summary.dialogFocus = await c.evaluate(() => document.activeElement?.textContent);
  await c.keyboard.press("Enter");
  await c.getByRole("heading", { name: "Rooms" }).waitFor();
  await tile(b, carol).waitFor({ state: "detached" });
  await b.locator('.tile[data-screen="true"]').waitFor({ state: "detached" });
  ok = true;
} catch (e) {
  summary.failure = String(e?.stack ?? e);
  await failureReport(pages(), summary, artifacts, "present");
} finally {
  await browser.close();
  await aliceBrowser.close();
}
summary.ok = ok;
console.log(JSON.stringify(summary, null, 1));
process.exit(ok ? 0 : 1);
