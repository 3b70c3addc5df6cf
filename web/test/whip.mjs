// WHIP ingest with a real, independent WHIP client: Eyevinn's @eyevinn/whip-web-client (npm,
// Apache-2.0; OPTIONS for trickle support, POST, trickled candidates by PATCH with If-Match,
// DELETE) drives Chromium's WebRTC stack in its own page and publishes into a room through the
// sidecar's WHIP endpoint; Alice, in the web app, decodes it: once VP8 + Opus (Chromium's
// default), once H.264 + Opus (as OBS sends; the client's peer connection is made to prefer
// H.264). A client with a wrong token is refused (401 with a problem) and leaves nothing in the
// room; the client's destroy() ends its session with DELETE and its tile goes. Measures POST →
// 201 (the sidecar's log and the client page's fetch) and "ingest" → first frame decoded by
// Alice. Prints a JSON summary; exits 1 on the first failure.
//
// (Debian bookworm's simple-whip-client cannot run: it links libsoup 2.4 while bookworm's
// GStreamer WebRTC library links libsoup 3, and libsoup aborts the process at pipeline start.)
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import * as esbuild from "esbuild";
import { launchChromium } from "./browser.mjs";
import { apiOf, createAndJoin, failureReport, open as openPage, receives, register, stepper, tile, until } from "./meeting-kit.mjs";

const [url, artifacts] = process.argv.slice(2);
mkdirSync(artifacts, { recursive: true });
const sidecarLog = process.env.FIRESFU_SIDECAR_LOG;
const suffix = Math.random().toString(36).slice(2, 8);
const alice = { name: `alice-${suffix}`, password: "correct horse battery" };
const vp8 = { name: `whip-vp8-${suffix}`, password: "whip publisher one" };
const h264 = { name: `whip-h264-${suffix}`, password: "whip publisher two" };
const summary = { steps: [], figures: {} };
const step = stepper(summary);
const require = createRequire(import.meta.url);

/** The sidecar's JSON API. */
const api = apiOf(url);

async function accessToken(user, create) {
  if (create) await api("POST", "/v1/accounts", { username: user.name, password: user.password });
  return (await api("POST", "/v1/sessions", { username: user.name, password: user.password })).accessToken;
}

/** The WHIP client library, bundled for a page (window.WHIP.WHIPClient). */
const clientBundle = (await esbuild.build({
  stdin: { contents: `export { WHIPClient } from "@eyevinn/whip-web-client";`, resolveDir: require.resolve("@eyevinn/whip-web-client/package.json").replace(/package\.json$/, ""), loader: "js" },
  bundle: true, write: false, format: "iife", globalName: "WHIP", platform: "browser", logLevel: "silent",
})).outputFiles[0].text;

/**
 * A page publishing its fake camera (640×360) and microphone with the WHIP client. `codec`:
 * "VP8" or "H264", put first in the video transceiver's preferences before the offer.
 * Resolves with the page and what the POST answered.
 */
async function publisher(browser, label, room, token, codec) {
  const page = await openPage(browser, url, { width: 640, height: 400 }, label);
  // The client sends the ETag as `ETag`, not RFC 9725's `If-Match`: its trickle PATCH gets 428,
  // after which it stops trickling (the ICE-lite server needs no candidates).
  page.patches = [];
  page.on("response", (r) => { if (r.request().method() === "PATCH") page.patches.push(r.status()); });
  const posted = page.waitForResponse((r) => r.request().method() === "POST" && r.url().includes("/whip/v1/rooms/"), { timeout: 30_000 });
  await page.addScriptTag({ content: clientBundle });
  const started = Date.now();
  await page.evaluate(async ([endpoint, authkey, codec]) => {
    const factory = (config) => {
      const pc = new RTCPeerConnection(config);
      const createOffer = pc.createOffer.bind(pc);
      pc.createOffer = async (options) => {
        for (const t of pc.getTransceivers()) {
          if (t.sender.track?.kind !== "video") continue;
          const codecs = RTCRtpSender.getCapabilities("video").codecs;
          const wanted = codecs.filter((c) => c.mimeType === `video/${codec}` && (codec !== "H264" || /profile-level-id=42e01f/.test(c.sdpFmtpLine ?? "")));
          t.setCodecPreferences([...wanted, ...codecs.filter((c) => !wanted.includes(c))]);
        }
        return createOffer(options);
      };
      return pc;
    };
    const client = new window.WHIP.WHIPClient({ endpoint, opts: { debug: true, iceServers: [], authkey }, peerConnectionFactory: factory });
    window.whipClient = client;
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 }, audio: true });
    await client.ingest(stream);
  }, [new URL(`/whip/v1/rooms/${room}`, url).href, token, codec]);
  const response = await posted;
  return { page, started, status: response.status(), headers: response.headers(), body: await response.text().catch(() => ""), postMs: (await response.request().timing()).responseEnd };
}

/** The `ms` of the sidecar's "WHIP session answered" lines, in order. */
function answeredMs() {
  return readFileSync(sidecarLog, "utf8").split("\n").filter((l) => l.includes("WHIP session answered"))
    .map((l) => Number(/ ms=(\d+)/.exec(l.replace(/\x1b\[[0-9;]*m/g, ""))?.[1])).filter((n) => Number.isFinite(n));
}

/** Waits until `page` decodes `who`'s video with codec `codec` and gets their audio. */
async function decodes(page, who, codec) {
  return until(page, `${who}'s ${codec} decoded`, async ([name, want]) => {
    const inbound = ((await window.firesfuInbound?.()) ?? []).filter((r) => r.participant === name);
    const video = inbound.find((r) => r.kind === "video" && (r.framesDecoded ?? 0) > 10);
    const audio = inbound.find((r) => r.kind === "audio" && r.packets > 20);
    return video && audio ? { frames: video.framesDecoded, width: video.frameWidth, height: video.frameHeight, codec: video.codec, audioCodec: audio.codec, ok: (video.codec ?? "").toLowerCase() === want } : null;
  }, [who, codec.toLowerCase()], 40_000);
}

const browser = await launchChromium();
const pages = () => browser.contexts().map((c) => c.pages()[0]);
let ok = false;
try {
  const a = await openPage(browser, url, { width: 1280, height: 800 }, "alice");

  step("alice registers, creates a room and joins it");
  await register(a, alice);
  const roomName = `WHIP ${suffix}`;
  await createAndJoin(a, roomName);
  const aliceToken = await accessToken(alice, false);
  const rooms = await api("GET", "/v1/rooms", null, aliceToken);
  const room = (rooms.rooms ?? rooms).find((r) => r.name === roomName)?.id;
  if (!room) throw new Error(`room ${roomName} not found in ${JSON.stringify(rooms)}`);

  step("a WHIP client with a wrong token is refused (401, a problem) and leaves nothing in the room");
  const refused = await publisher(browser, "refused", room, "not-a-token", "VP8");
  if (refused.status !== 401) throw new Error(`a wrong token got ${refused.status}: ${refused.body}`);
  if (!/problem\+json/.test(refused.headers["content-type"] ?? "") || !/Bearer/.test(refused.headers["www-authenticate"] ?? "")) {
    throw new Error(`the 401 is not a problem with a Bearer challenge: ${JSON.stringify(refused.headers)}`);
  }
  summary.figures.wrongToken = { status: refused.status, type: JSON.parse(refused.body).type };
  await refused.page.close();

  step("the WHIP client publishes VP8 + Opus: alice decodes it");
  const one = await publisher(browser, "vp8", room, await accessToken(vp8, true), "VP8");
  if (one.status !== 201) throw new Error(`POST answered ${one.status}: ${one.body}`);
  const gotVp8 = await decodes(a, vp8.name, "video/VP8");
  summary.figures.vp8 = { ingestToDecodedMs: Date.now() - one.started, postMs: Math.round(one.postMs), location: one.headers.location, ...gotVp8 };
  if (!gotVp8.ok) throw new Error(`the VP8 publisher is decoded as ${gotVp8.codec}`);
  if (gotVp8.width !== 640 || gotVp8.height !== 360) throw new Error(`the VP8 publisher is decoded at ${gotVp8.width}×${gotVp8.height}`);
  summary.figures.vp8.trickle = { patchStatuses: one.page.patches, stillTrickling: await one.page.evaluate(() => window.whipClient.supportTrickleIce()) };

  step("a second client publishes H.264 + Opus (as OBS does): alice decodes both");
  const two = await publisher(browser, "h264", room, await accessToken(h264, true), "H264");
  if (two.status !== 201) throw new Error(`POST answered ${two.status}: ${two.body}`);
  const gotH264 = await decodes(a, h264.name, "video/H264");
  summary.figures.h264 = { ingestToDecodedMs: Date.now() - two.started, postMs: Math.round(two.postMs), ...gotH264 };
  if (!gotH264.ok) throw new Error(`the H.264 publisher is decoded as ${gotH264.codec}`);
  await receives(a, vp8);

  step("the VP8 client's destroy() (DELETE): its tile goes, the H.264 one stays");
  const stopAt = Date.now();
  const deleted = one.page.waitForResponse((r) => r.request().method() === "DELETE", { timeout: 15_000 });
  await one.page.evaluate(() => window.whipClient.destroy());
  summary.figures.vp8.deleteStatus = (await deleted).status();
  if (summary.figures.vp8.deleteStatus !== 200) throw new Error(`DELETE answered ${summary.figures.vp8.deleteStatus}`);
  await tile(a, vp8).waitFor({ state: "detached", timeout: 15_000 });
  summary.figures.vp8.tileGoneMs = Date.now() - stopAt;
  await receives(a, h264);

  summary.figures.postTo201Ms = answeredMs();
  await a.screenshot({ path: `${artifacts}/whip-meeting.png` });
  ok = true;
} catch (err) {
  summary.error = String(err?.stack ?? err);
  await failureReport(pages(), summary, artifacts, "whip");
} finally {
  await browser.close().catch(() => {});
  console.log(JSON.stringify(summary, null, 2));
  process.exit(ok ? 0 : 1);
}
