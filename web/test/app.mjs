// The meeting app as two people use it (Debian's Chromium, fake camera and microphone): Alice
// on a desktop (her microphone plays speech: FIRESFU_SPEECH_WAV), Bob on a phone-sized screen.
// Each step asserts what the user sees. Prints a
// JSON summary; exits 1 on the first failure. Screenshots go to the artifacts folder.
import { mkdirSync } from "node:fs";
import { launchChromium } from "./browser.mjs";
import { failureReport, open as openPage, receives, register, roomCount, stepper, tile, TIMEOUT, until } from "./meeting-kit.mjs";

const [url, artifacts] = process.argv.slice(2);
mkdirSync(artifacts, { recursive: true });
const suffix = Math.random().toString(36).slice(2, 8);
const alice = { name: `alice-${suffix}`, password: "correct horse battery" };
const bob = { name: `bob-${suffix}`, password: "staple battery horse" };
const summary = { steps: [] };
const started = Date.now();
const step = stepper(summary, started);
const open = (browser, viewport, who) => openPage(browser, url, viewport, who);

/** `FIRESFU_BROADCASTS="bc-1:pgid bc-2:pgid"`: the fleet's broadcast process groups. */
const broadcasts = new Map((process.env.FIRESFU_BROADCASTS ?? "").split(" ").filter(Boolean).map((e) => {
  const [id, pgid] = e.split(":");
  return [id, Number(pgid)];
}));

/** The instance the monitor assigned the room to (Firestore emulator REST, as an admin). */
async function roomInstance(roomId) {
  const url = `http://${process.env.FIRESFU_EMULATOR}/v1/projects/${process.env.FIRESFU_PROJECT}/databases/(default)/documents/rooms/${roomId}`;
  const doc = await fetch(url, { headers: { Authorization: "Bearer owner" } }).then((r) => r.json());
  return doc.fields?.assignment?.mapValue?.fields?.instance?.stringValue ?? null;
}

const browser = await launchChromium();
const speech = process.env.FIRESFU_SPEECH_WAV;
const aliceBrowser = speech ? await launchChromium([], [`--use-file-for-fake-audio-capture=${speech}`]) : browser;
const pages = () => [...new Set([browser, aliceBrowser])].flatMap((br) => br.contexts().map((c) => c.pages()[0]));
let ok = false;
try {
  const a = await open(aliceBrowser, { width: 1280, height: 800 }, "alice");
  const b = await open(browser, { width: 390, height: 844 }, "bob");

  step("inline errors on the landing page");
  await a.fill("input[name=username]", alice.name);
  await a.fill("input[name=password]", "short");
  await a.click("button[name=register]");
  await a.waitForFunction(() => document.querySelector("p.error")?.textContent?.includes("password"));
  summary.shortPasswordError = await a.textContent("p.error");

  step("both register");
  await register(a, alice);
  await register(b, bob);

  step("alice creates a room with an image");
  const roomName = `Standup ${suffix}`;
  await a.click("button[name=create-room]");
  await a.fill("input[name=room-name]", roomName);
  await a.locator("dialog .image-option").nth(1).click();
  const chosenImage = await a.locator("dialog .image-option").nth(1).getAttribute("data-image-id");
  await a.getByRole("button", { name: "Create" }).click();

  step("bob sees the room in his grid, with nobody in it");
  await roomCount(b, roomName, 0);
  summary.bobSeesImage = await b.locator("article.room-card", { hasText: roomName }).locator("img").getAttribute("src");
  if (!summary.bobSeesImage?.includes(chosenImage)) throw new Error(`room card shows ${summary.bobSeesImage}, not image ${chosenImage}`);
  if (await b.locator("article.room-card", { hasText: roomName }).locator("button[name=change-image]").count()) {
    throw new Error("bob can change the image of alice's room");
  }

  step("alice joins from the pre-join screen (preview, devices on)");
  await a.locator("video.preview").waitFor();
  await a.click("button[name=join]");
  const aliceJoinedAt = Date.now();
  await roomCount(b, roomName, 1);

  step("bob joins with the camera and microphone on");
  await b.locator("article.room-card", { hasText: roomName }).click();
  await b.click("button[name=join]");
  const bobJoinedAt = Date.now();

  step("each decodes the other's video and receives their audio");
  summary.aliceReceives = await receives(a, bob);
  summary.bobReceives = await receives(b, alice);
  summary.mediaBothWaysMs = Date.now() - bobJoinedAt;
  summary.aliceWaitedMs = Date.now() - aliceJoinedAt;
  await tile(a, bob).and(a.locator("[data-video=true]")).waitFor();
  await tile(b, alice).and(b.locator("[data-video=true]")).waitFor();

  step("RTT and quality are shown for the other participant");
  for (const [page, other] of [[a, bob], [b, alice]]) {
    await page.waitForFunction((name) => {
      const t = document.querySelector(`article.tile[data-participant="${name}"]`);
      return t?.querySelector(".rtt")?.dataset.rttMs && ["good", "fair", "poor"].includes(t.querySelector(".quality")?.dataset.grade);
    }, other.name, { timeout: TIMEOUT, polling: 250 });
  }
  summary.aliceSeesBob = await tile(a, bob).locator(".stats").textContent();
  summary.bobSeesAlice = await tile(b, alice).locator(".stats").textContent();
  await a.screenshot({ path: `${artifacts}/room-desktop.png` });
  await b.screenshot({ path: `${artifacts}/room-phone.png` });

  step("bob mutes: alice sees the muted icon");
  await b.click("button[name=mic]");
  await tile(a, bob).locator(".muted-icon").waitFor({ state: "visible" });

  step("alice speaks while bob is muted: bob's app marks her tile as the speaker, first");
  const quietAt = Date.now();
  await tile(b, alice).and(b.locator('[data-speaking="true"]')).waitFor();
  summary.speakerMarkedMs = Date.now() - quietAt;
  const firstTile = await b.locator("article.tile").first().getAttribute("data-participant");
  if (firstTile !== alice.name) throw new Error(`the speaker's tile is not first for bob: ${firstTile}`);
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 250));
    if (await tile(b, alice).getAttribute("data-speaking") !== "true") throw new Error("alice's speaker mark flapped off");
  }
  if (await tile(a, bob).getAttribute("data-speaking") === "true") throw new Error("alice's app marks bob, who is muted");

  step("bob stops his camera: alice sees his placeholder");
  await b.click("button[name=camera]");
  await tile(a, bob).locator(".placeholder").waitFor({ state: "visible" });
  await tile(a, bob).locator("video").waitFor({ state: "hidden" });

  step("bob starts his camera again: alice decodes it again");
  const before = summary.aliceReceives.find((r) => r.participant === bob.name && r.kind === "video")?.framesDecoded ?? 0;
  await b.click("button[name=camera]");
  await tile(a, bob).locator("video").waitFor({ state: "visible" });
  await until(a, "bob's video again", async ([name, n]) => ((await window.firesfuInbound?.()) ?? [])
    .some((r) => r.participant === name && r.kind === "video" && r.framesDecoded > n + 10), [bob.name, before]);

  step("chat: alice writes, bob reads");
  const text = `hello from alice ${suffix}`;
  await a.fill("input[name=chat]", text);
  await a.press("input[name=chat]", "Enter");
  await b.waitForFunction((t) => [...document.querySelectorAll(".messages .text")].some((e) => e.textContent === t), text);
  await b.click("button[name=chat-toggle]");
  await b.screenshot({ path: `${artifacts}/chat-phone.png` });
  await b.click("button[name=chat-toggle]");

  step("the room's instance drains: both see \"Reconnecting…\" and get media again");
  const roomId = decodeURIComponent(new URL(a.url()).hash.split("/").pop());
  const instance = await roomInstance(roomId);
  const pgid = broadcasts.get(instance);
  if (!pgid) throw new Error(`room ${roomId} is on ${instance}, not a known instance`);
  const drainedAt = Date.now();
  process.kill(-pgid, "SIGTERM");
  await Promise.all([a, b].map((p) => p.locator('.banner[data-kind="reconnecting"]').waitFor({ state: "visible" })));
  summary.reconnectingSeenMs = Date.now() - drainedAt;
  summary.afterDrainAlice = await receives(a, bob);
  summary.afterDrainBob = await receives(b, alice);
  summary.mediaAgainAfterDrainMs = Date.now() - drainedAt;
  const moved = await roomInstance(roomId);
  if (moved === instance) throw new Error(`the room is still on ${instance}`);
  summary.movedFrom = instance;
  summary.movedTo = moved;
  await a.locator(".banner").waitFor({ state: "hidden" });
  await b.locator(".banner").waitFor({ state: "hidden" });

  step("bob leaves: his tile disappears for alice; the grid counts one");
  await b.click("button[name=leave]");
  await tile(a, bob).waitFor({ state: "detached" });
  await roomCount(b, roomName, 1);

  step("alice leaves: the grid counts nobody");
  await a.click("button[name=leave]");
  await roomCount(b, roomName, 0);

  step("alice changes her room's image");
  const card = a.locator("article.room-card", { hasText: roomName });
  await card.locator("button[name=change-image]").click();
  await a.locator("dialog .image-option").nth(2).click();
  const newImage = await a.locator("dialog .image-option").nth(2).getAttribute("data-image-id");
  await a.getByRole("button", { name: "Save" }).click();
  await b.waitForFunction(([name, id]) => [...document.querySelectorAll("article.room-card")].some((c) =>
    c.querySelector("h3")?.textContent === name && c.querySelector("img")?.getAttribute("src")?.includes(id)), [roomName, newImage]);
  await b.screenshot({ path: `${artifacts}/rooms-phone.png` });
  await a.screenshot({ path: `${artifacts}/rooms-desktop.png` });

  step("bob erases his account (after confirming) and cannot sign in again");
  await b.click("button[name=user-menu]");
  await b.click("button[name=erase]");
  await b.fill("input[name=confirm-username]", bob.name);
  await b.getByRole("button", { name: "Erase account" }).click();
  await b.getByText("Your account was erased.").waitFor();
  await b.fill("input[name=username]", bob.name);
  await b.fill("input[name=password]", bob.password);
  await b.click("button[name=login]");
  await b.waitForFunction(() => (document.querySelector("p.error")?.textContent ?? "").length > 0);
  summary.erasedLoginError = await b.textContent("p.error");
  ok = true;
} catch (e) {
  summary.failure = String(e?.stack ?? e);
  summary.serverStats = await fetch("http://127.0.0.1:8080/stats").then((r) => r.json()).catch((err) => String(err));
  await failureReport(pages(), summary, artifacts, "app");
} finally {
  await browser.close();
  if (aliceBrowser !== browser) await aliceBrowser.close();
}
summary.ok = ok;
summary.totalMs = Date.now() - started;
console.log(JSON.stringify(summary, null, 1));
process.exit(ok ? 0 : 1);
