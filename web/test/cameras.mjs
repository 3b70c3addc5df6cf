// IP cameras as two people see them (Debian's Chromium): Alice owns the room and adds an RTSP
// camera through the meeting's "Cameras" dialog, pasting a URL with the login in it (the
// dialog moves it into the masked fields); Alice and Bob both decode the camera (its size, its
// sound); the camera is stopped for 10 s and both decode it again without re-joining; a second
// camera with a wrong password is shown as unavailable (Alice, the owner, sees why) until she
// changes its login; switched off, its tile goes. Measures
// the time from "Add camera" to Alice's first decoded frame, the camera-clock → decoded
// latency (each frame carries the camera's wall clock, tests/rtsp/camera.py --stamp) and the
// broadcast instance's CPU with and without the camera. Prints a JSON summary; exits 1 on the
// first failure.
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { launchChromium } from "./browser.mjs";
import { audit, failureReport, open as openPage, receives, register, stepper, until } from "./meeting-kit.mjs";

const [url, artifacts] = process.argv.slice(2);
mkdirSync(artifacts, { recursive: true });
const suffix = Math.random().toString(36).slice(2, 8);
const alice = { name: `alice-${suffix}`, password: "correct horse battery" };
const bob = { name: `bob-${suffix}`, password: "staple battery horse" };
const summary = { steps: [], figures: {} };
const step = stepper(summary);
const desktop = { width: 1280, height: 800 };
const CAMERA = { name: "Lobby", user: "camera", password: "secret", port: 8554, width: 640, height: 360 };
const WRONG = "Back door";
const broadcastPid = Number(process.env.FIRESFU_BROADCAST_PID);

/** The test camera (Digest auth, stamped frames), in this process group. */
async function startCamera() {
  const child = spawn("/usr/bin/python3", [process.env.FIRESFU_CAMERA_SCRIPT, "--address", "127.0.0.1", "--port", String(CAMERA.port),
    "--auth", "digest", "--user", CAMERA.user, "--password", CAMERA.password, "--stamp",
    "--width", String(CAMERA.width), "--height", String(CAMERA.height)], { stdio: ["ignore", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the test camera did not start in 20 s")), 20_000);
    lines.on("line", (line) => {
      if (line.startsWith("ready ")) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on("exit", (code) => reject(new Error(`the test camera exited (${code})`)));
  });
  return child;
}

async function stopCamera(child) {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  await exited;
}

/** The broadcast process's CPU time (user + system), in seconds. */
function cpuSeconds() {
  const stat = readFileSync(`/proc/${broadcastPid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** The broadcast's CPU use over `ms`, in % of one core. */
async function cpuOver(ms) {
  const [c0, t0] = [cpuSeconds(), Date.now()];
  await new Promise((r) => setTimeout(r, ms));
  return (100 * (cpuSeconds() - c0)) / ((Date.now() - t0) / 1000);
}

/** What `page` decodes of the camera called `name`: its video record and audio packets. */
const cameraMedia = (name) => async (who) => {
  const inbound = ((await window.firesfuInbound?.()) ?? []).filter((r) => r.participant === who);
  const video = inbound.find((r) => r.kind === "video");
  const audio = inbound.find((r) => r.kind === "audio");
  return video ? { frames: video.framesDecoded ?? 0, width: video.frameWidth, height: video.frameHeight, audioPackets: audio?.packets ?? 0 } : null;
};

/** Waits until `page` decodes more of camera `name` than `after` frames; returns what it saw. */
async function decodes(page, name, after = 0, timeout = 30_000) {
  return until(page, `${name} decoded after ${after} frames`, async ([who, n]) => {
    const inbound = ((await window.firesfuInbound?.()) ?? []).filter((r) => r.participant === who);
    const video = inbound.find((r) => r.kind === "video" && (r.framesDecoded ?? 0) > n);
    const audio = inbound.find((r) => r.kind === "audio" && r.packets > 0);
    return video && audio ? { frames: video.framesDecoded, width: video.frameWidth, height: video.frameHeight, audioPackets: audio.packets } : null;
  }, [name, after], timeout);
}

/**
 * For `ms`, reads the wall-clock stamp out of each frame of camera `name`'s tile as it is
 * handed to the compositor (requestVideoFrameCallback): 48 blocks of 8 × 8 px at the top left,
 * white = 1, most significant first. Returns the latencies (ms) and how many frames had no
 * readable stamp.
 */
function stampLatencies([name, ms]) {
  const video = document.querySelector(`article.tile[data-camera="true"][data-participant="${name}"] video`);
  if (!video || !("requestVideoFrameCallback" in video)) return { latencies: [], unreadable: -1 };
  const canvas = new OffscreenCanvas(48 * 8, 8);
  const g = canvas.getContext("2d", { willReadFrequently: true });
  const latencies = [];
  let unreadable = 0;
  return new Promise((resolve) => {
    const end = performance.now() + ms;
    const onFrame = (_now, meta) => {
      g.drawImage(video, 0, 0, 48 * 8, 8, 0, 0, 48 * 8, 8);
      const px = g.getImageData(0, 0, 48 * 8, 8).data;
      let value = 0;
      for (let i = 0; i < 48; i++) {
        const at = (4 * (48 * 8) + i * 8 + 4) * 4;
        const luma = 0.299 * px[at] + 0.587 * px[at + 1] + 0.114 * px[at + 2];
        value = value * 2 + (luma > 128 ? 1 : 0);
      }
      const shown = performance.timeOrigin + meta.presentationTime;
      const latency = shown - value;
      if (latency > -50 && latency < 10_000) latencies.push(latency);
      else unreadable++;
      if (performance.now() < end) video.requestVideoFrameCallback(onFrame);
      else resolve({ latencies, unreadable });
    };
    video.requestVideoFrameCallback(onFrame);
  });
}

const percentile = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? Math.round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]) : null;
};

const browser = await launchChromium();
const pages = () => browser.contexts().map((c) => c.pages()[0]);
let camera = null;
let ok = false;
try {
  camera = await startCamera();
  const a = await openPage(browser, url, desktop, "alice");
  const b = await openPage(browser, url, desktop, "bob");

  step("alice and bob register; alice creates a room; both join");
  await Promise.all([register(a, alice), register(b, bob)]);
  const roomName = `Cameras ${suffix}`;
  await a.click("button[name=create-room]");
  await a.fill("input[name=room-name]", roomName);
  await a.getByRole("button", { name: "Create" }).click();
  await a.click("button[name=join]");
  await b.locator("article.room-card", { hasText: roomName }).click();
  await b.click("button[name=join]");
  await receives(a, bob);
  await receives(b, alice);
  if (await b.locator("button[name=cameras]").count()) throw new Error("bob, not the owner, has a Cameras button");

  step("the broadcast's CPU with two people and no camera");
  summary.figures.cpuWithoutCameraPct = Math.round(10 * (await cpuOver(10_000))) / 10;

  step("alice adds the camera, its login pasted in the URL: the dialog masks it");
  await a.click("button[name=cameras]");
  await a.fill("input[name=camera-name]", CAMERA.name);
  await a.fill("input[name=camera-url]", `rtsp://${CAMERA.user}:${CAMERA.password}@127.0.0.1:${CAMERA.port}/h264`);
  await a.press("input[name=camera-url]", "Tab");
  const moved = await a.evaluate(() => ({
    url: document.querySelector("input[name=camera-url]").value,
    username: document.querySelector("input[name=camera-username]").value,
    passwordType: document.querySelector("input[name=camera-password]").type,
    passwordFilled: document.querySelector("input[name=camera-password]").value.length > 0,
  }));
  if (moved.url !== `rtsp://127.0.0.1:${CAMERA.port}/h264` || moved.username !== CAMERA.user || moved.passwordType !== "password" || !moved.passwordFilled) {
    throw new Error(`the login was not moved into the masked fields: ${JSON.stringify(moved)}`);
  }
  const dialogAudit = await audit(a);
  summary.audit = dialogAudit.violations;
  if (dialogAudit.severe.length) throw new Error(`axe: the cameras dialog: ${JSON.stringify(dialogAudit.severe)}`);
  const added = Date.now();
  await a.getByRole("button", { name: "Add camera" }).click();
  const listed = a.locator("ul.cameras li.camera");
  await listed.first().waitFor();
  const shown = await listed.first().textContent();
  if (shown.includes(CAMERA.password)) throw new Error(`the dialog shows the password: ${shown}`);

  step("alice and bob decode the camera: its size and its sound");
  const first = await decodes(a, CAMERA.name);
  summary.figures.addToFirstDecodedMs = Date.now() - added;
  await a.keyboard.press("Escape");
  const seenByBob = await decodes(b, CAMERA.name);
  for (const [who, seen] of [["alice", first], ["bob", seenByBob]]) {
    if (seen.width !== CAMERA.width || seen.height !== CAMERA.height) throw new Error(`${who} decodes the camera at ${seen.width}×${seen.height}`);
  }
  for (const page of [a, b]) {
    const tile = page.locator(`article.tile[data-camera="true"][data-participant="${CAMERA.name}"]`);
    await tile.waitFor();
    const label = await tile.getAttribute("aria-label");
    if (!label.includes("(camera)")) throw new Error(`the camera's tile is not labelled as a camera: ${label}`);
    await page.waitForFunction((n) => document.querySelector(`article.tile[data-camera="true"][data-participant="${n}"]`)?.dataset.status === "live", CAMERA.name);
  }
  const inPeople = await b.evaluate((n) => [...document.querySelectorAll(".people li")].some((li) => li.textContent.includes(n)), CAMERA.name);
  if (inPeople) throw new Error("the camera is listed among the people");

  step("latency: camera clock → frame decoded in Chromium (both browsers, 8 s)");
  const [la, lb] = await Promise.all([a.evaluate(stampLatencies, [CAMERA.name, 8000]), b.evaluate(stampLatencies, [CAMERA.name, 8000])]);
  const all = [...la.latencies, ...lb.latencies];
  if (all.length < 100) throw new Error(`too few stamped frames read: ${all.length} (unreadable ${la.unreadable + lb.unreadable})`);
  summary.figures.latencyMs = { frames: all.length, unreadable: la.unreadable + lb.unreadable, p50: percentile(all, 50), p95: percentile(all, 95), max: percentile(all, 100) };

  step("the broadcast's CPU with the camera pulled for two viewers");
  summary.figures.cpuWithCameraPct = Math.round(10 * (await cpuOver(10_000))) / 10;

  step("the camera stops for 10 s: both see it reconnecting, then decode it again without re-joining");
  const sessions = await Promise.all([a, b].map((p) => p.evaluate(() => window.firesfuDebug?.().sessionId)));
  const before = await Promise.all([a, b].map((p) => p.evaluate(cameraMedia(CAMERA.name), CAMERA.name)));
  await stopCamera(camera);
  const stoppedAt = Date.now();
  for (const page of [a, b]) {
    await page.waitForFunction((n) => document.querySelector(`article.tile[data-camera="true"][data-participant="${n}"]`)?.textContent.includes("Reconnecting"),
      CAMERA.name, { timeout: 30_000 });
  }
  summary.figures.reconnectingShownAfterMs = Date.now() - stoppedAt;
  const ownerSees = await a.locator(`article.tile[data-camera="true"][data-participant="${CAMERA.name}"] .camera-status`).textContent();
  const memberSees = await b.locator(`article.tile[data-camera="true"][data-participant="${CAMERA.name}"] .camera-status`).textContent();
  summary.figures.statusDuringOutage = { owner: ownerSees, member: memberSees };
  if (memberSees.includes(":")) throw new Error(`a member sees the camera's error message: ${memberSees}`);
  await new Promise((r) => setTimeout(r, Math.max(0, 10_000 - (Date.now() - stoppedAt))));
  camera = await startCamera();
  const restarted = Date.now();
  const again = await Promise.all([a, b].map((p, i) => decodes(p, CAMERA.name, before[i]?.frames ?? 0, 60_000)));
  summary.figures.decodedAgainAfterRestartMs = Date.now() - restarted;
  const sessionsAfter = await Promise.all([a, b].map((p) => p.evaluate(() => window.firesfuDebug?.().sessionId)));
  if (sessions.some((s, i) => s !== sessionsAfter[i])) throw new Error(`someone re-joined: ${sessions} → ${sessionsAfter}`);
  if (again.some((s) => s.width !== CAMERA.width)) throw new Error(`decoded again at ${JSON.stringify(again)}`);

  step("a camera with a wrong password: unavailable, the owner sees why; the first one stays live");
  await a.click("button[name=cameras]");
  await a.fill("input[name=camera-name]", WRONG);
  await a.fill("input[name=camera-url]", `rtsp://127.0.0.1:${CAMERA.port}/h264`);
  await a.fill("input[name=camera-username]", CAMERA.user);
  await a.fill("input[name=camera-password]", "not-the-password");
  await a.getByRole("button", { name: "Add camera" }).click();
  await a.locator("ul.cameras li.camera").nth(1).waitFor();
  await a.keyboard.press("Escape");
  for (const page of [a, b]) {
    await page.waitForFunction((n) => document.querySelector(`article.tile[data-camera="true"][data-participant="${n}"]`)?.textContent.includes("unavailable"), WRONG, { timeout: 30_000 });
  }
  const failedOwner = await a.locator(`article.tile[data-participant="${WRONG}"] .camera-status`).textContent();
  const failedMember = await b.locator(`article.tile[data-participant="${WRONG}"] .camera-status`).textContent();
  summary.figures.wrongPassword = { owner: failedOwner, member: failedMember };
  if (!/credentials/.test(failedOwner)) throw new Error(`the owner is not told why: ${failedOwner}`);
  if (failedMember.includes(":")) throw new Error(`a member sees the camera's error message: ${failedMember}`);
  const still = await Promise.all([a, b].map((p, i) => decodes(p, CAMERA.name, again[i].frames)));
  summary.figures.stillDecoding = still.map((s) => s.frames);
  await receives(a, bob);
  await receives(b, alice);

  step("alice fixes the password (Change, the login masked): both decode the second camera");
  await a.click("button[name=cameras]");
  await a.locator("ul.cameras li.camera").nth(1).locator("button[name=change-camera]").click();
  const placeholder = await a.getAttribute("input[name=change-password]", "placeholder");
  if (placeholder !== "unchanged") throw new Error(`the stored login is not said to stay: ${placeholder}`);
  await a.fill("input[name=change-username]", CAMERA.user);
  await a.fill("input[name=change-password]", CAMERA.password);
  const fixedAt = Date.now();
  await a.getByRole("button", { name: "Save" }).click();
  await a.locator("dialog[aria-label^='Change']").waitFor({ state: "detached" });
  await a.keyboard.press("Escape");
  await Promise.all([decodes(a, WRONG), decodes(b, WRONG)]);
  summary.figures.fixedToDecodedMs = Date.now() - fixedAt;

  step("alice switches the second camera off: its tile goes");
  await a.click("button[name=cameras]");
  await a.locator("ul.cameras li.camera").nth(1).locator("input[name=enabled]").uncheck();
  await a.keyboard.press("Escape");
  await b.waitForFunction((n) => !document.querySelector(`article.tile[data-participant="${n}"]`), WRONG, { timeout: 30_000 });

  await a.screenshot({ path: `${artifacts}/cameras-meeting.png` });
  ok = true;
} catch (err) {
  summary.error = String(err?.stack ?? err);
  await failureReport(pages(), summary, artifacts, "cameras");
} finally {
  if (camera) await stopCamera(camera).catch(() => {});
  await browser.close().catch(() => {});
  console.log(JSON.stringify(summary, null, 2));
  process.exit(ok ? 0 : 1);
}
