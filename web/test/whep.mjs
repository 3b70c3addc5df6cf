// WHEP playback with a real, independent WHEP player: Eyevinn's @eyevinn/webrtc-player (npm,
// MIT; one POST of a recvonly offer after ICE gathering, Location kept for the DELETE of
// unload()) plays, in its own Chromium page, what Alice publishes from the web app: once from
// her participant endpoint, once from the room's presenter endpoint. Then Alice shares her
// screen: the presenter player switches to the share (a wider picture) without a new offer,
// while the participant player keeps showing the share too (a screen share goes before the
// camera). A wrong token is refused (401 with a problem); unload() ends the viewer's session
// (DELETE 200). Prints a JSON summary; exits 1 on the first failure.
import { mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import * as esbuild from "esbuild";
import { launchChromium } from "./browser.mjs";
import { apiOf, createAndJoin, failureReport, open as openPage, register, stepper, until } from "./meeting-kit.mjs";

const [url, artifacts] = process.argv.slice(2);
mkdirSync(artifacts, { recursive: true });
const suffix = Math.random().toString(36).slice(2, 8);
const alice = { name: `alice-${suffix}`, password: "correct horse battery" };
const eve = { name: `eve-${suffix}`, password: "whep viewer password" };
const summary = { steps: [], figures: {} };
const step = stepper(summary);
const require = createRequire(import.meta.url);

/** The sidecar's JSON API. */
const api = apiOf(url);

/** The player library, bundled for a page (window.WHEP.WebRTCPlayer). */
const playerBundle = (await esbuild.build({
  stdin: { contents: `export { WebRTCPlayer } from "@eyevinn/webrtc-player";`, resolveDir: require.resolve("@eyevinn/webrtc-player/package.json").replace(/package\.json$/, ""), loader: "js" },
  bundle: true, write: false, format: "iife", globalName: "WHEP", platform: "browser", logLevel: "silent",
})).outputFiles[0].text;

/**
 * A page playing `path` with the player. Resolves with the page and what the POST answered;
 * the page's `window.seen()` reports the video element's size, time and decoded frames.
 */
async function player(browser, label, path, token) {
  const page = await openPage(browser, url, { width: 800, height: 500 }, label);
  const posted = page.waitForResponse((r) => r.request().method() === "POST" && r.url().includes("/whep/v1/rooms/"), { timeout: 30_000 });
  await page.addScriptTag({ content: playerBundle });
  const started = Date.now();
  await page.evaluate(async ([endpoint, token]) => {
    document.body.innerHTML = "";
    const video = Object.assign(document.createElement("video"), { autoplay: true, muted: true, playsInline: true });
    document.body.append(video);
    window.events = [];
    const p = new window.WHEP.WebRTCPlayer({ video, type: "whep", iceServers: [] });
    for (const e of ["initial-connection-failed", "connect-error", "peer-connection-failed"]) p.on(e, () => window.events.push(e));
    window.player = p;
    window.seen = () => {
      const q = video.getVideoPlaybackQuality?.();
      return { width: video.videoWidth, height: video.videoHeight, time: video.currentTime, frames: q?.totalVideoFrames ?? 0,
        tracks: video.srcObject?.getTracks().map((t) => t.kind).sort() ?? [], events: window.events };
    };
    await p.load(new URL(endpoint), `Bearer ${token}`);
  }, [new URL(path, url).href, token]);
  const response = await posted;
  return { page, started, status: response.status(), headers: response.headers(), body: await response.text().catch(() => "") };
}

/** Waits until the player page shows moving video wider than `minWidth`. */
function plays(page, what, minWidth = 0) {
  return until(page, what, (min) => {
    const s = window.seen();
    return s.width > min && s.time > 1 && s.frames > 20 ? s : null;
  }, minWidth, 40_000);
}

const browser = await launchChromium();
const pages = () => browser.contexts().map((c) => c.pages()[0]);
let ok = false;
try {
  const a = await openPage(browser, url, { width: 1280, height: 800 }, "alice");

  step("alice registers, creates a room and joins it with her camera");
  await register(a, alice);
  const roomName = `WHEP ${suffix}`;
  await createAndJoin(a, roomName);
  const session = await until(a, "alice's session", () => window.firesfuDebug?.().state === "connected" && window.firesfuDebug().sessionId);
  const aliceToken = (await api("POST", "/v1/sessions", { username: alice.name, password: alice.password })).accessToken;
  const rooms = await api("GET", "/v1/rooms", null, aliceToken);
  const room = (rooms.rooms ?? rooms).find((r) => r.name === roomName)?.id;
  if (!room) throw new Error(`room ${roomName} not found`);
  await api("POST", "/v1/accounts", { username: eve.name, password: eve.password });
  const eveToken = (await api("POST", "/v1/sessions", { username: eve.name, password: eve.password })).accessToken;

  step("a player with a wrong token is refused (401, a problem with a Bearer challenge)");
  const refused = await player(browser, "refused", `/whep/v1/rooms/${room}/participants/${session}`, "not-a-token");
  if (refused.status !== 401 || !/problem\+json/.test(refused.headers["content-type"] ?? "") || !/Bearer/.test(refused.headers["www-authenticate"] ?? "")) {
    throw new Error(`a wrong token got ${refused.status} ${JSON.stringify(refused.headers)}: ${refused.body}`);
  }
  summary.figures.wrongToken = { status: refused.status, type: JSON.parse(refused.body).type };
  await refused.page.close();

  step("the player plays alice's camera from her participant endpoint");
  const one = await player(browser, "participant", `/whep/v1/rooms/${room}/participants/${session}`, eveToken);
  if (one.status !== 201) throw new Error(`POST answered ${one.status}: ${one.body}`);
  const camera = await plays(one.page, "alice's camera");
  if (camera.tracks.join() !== "audio,video") throw new Error(`the player has tracks ${camera.tracks}`);
  summary.figures.participant = { postToPlayingMs: Date.now() - one.started, location: one.headers.location, ...camera };

  step("a second player plays the presenter endpoint: alice, the only one publishing");
  const two = await player(browser, "presenter", `/whep/v1/rooms/${room}/presenter`, eveToken);
  if (two.status !== 201) throw new Error(`POST answered ${two.status}: ${two.body}`);
  const presenter = await plays(two.page, "the presenter (alice's camera)");
  summary.figures.presenter = { postToPlayingMs: Date.now() - two.started, ...presenter };
  // The players are in alice's roster as viewers, and get no tile.
  const viewers = await until(a, "two viewers in the roster", () => {
    const roster = window.firesfuDebug?.().roster ?? [];
    const watching = roster.filter((p) => p.watching).map((p) => p.watching).sort();
    return watching.length === 2 ? watching : null;
  });
  const tiles = await a.locator("article.tile").count();
  summary.figures.viewersInRoster = viewers;
  if (tiles !== 1) throw new Error(`alice sees ${tiles} tiles with only herself publishing`);

  step("alice shares her screen: the presenter player switches to the share without a new offer");
  const posts = [];
  two.page.on("request", (r) => { if (r.method() === "POST") posts.push(r.url()); });
  const sharedAt = Date.now();
  await a.click("button[name=share]");
  // Chromium's fake screen is 1920×1080; the fake camera's largest layer is 640 wide.
  const share = await plays(two.page, "the screen share", 640);
  summary.figures.presenter.share = { switchMs: Date.now() - sharedAt, ...share, newOffers: posts.length };
  if (posts.length) throw new Error(`the player offered again: ${posts.join(", ")}`);
  // The participant's player shows her share too (a share goes before the camera).
  summary.figures.participant.share = await plays(one.page, "the share on alice's player", 640);

  step("unload() ends the participant player's session (DELETE 200)");
  const deleted = one.page.waitForResponse((r) => r.request().method() === "DELETE", { timeout: 15_000 });
  await one.page.evaluate(() => window.player.unload());
  summary.figures.participant.deleteStatus = (await deleted).status();
  if (summary.figures.participant.deleteStatus !== 200) throw new Error(`DELETE answered ${summary.figures.participant.deleteStatus}`);

  await two.page.screenshot({ path: `${artifacts}/whep-presenter.png` });
  ok = true;
} catch (err) {
  summary.error = String(err?.stack ?? err);
  await failureReport(pages(), summary, artifacts, "whep");
} finally {
  await browser.close().catch(() => {});
  console.log(JSON.stringify(summary, null, 2));
  process.exit(ok ? 0 : 1);
}
