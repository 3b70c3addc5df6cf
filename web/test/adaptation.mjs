// Adaptation with real Chromium: a publisher sends its 1280×720 fake camera in three simulcast
// layers; two receive-only subscribers ask for different sizes. Checks, from getStats and the
// session documents, what a user would see:
//   1. a subscriber with no limit decodes the top layer (720p);
//   2. one asking for ≤ 180 lines gets the 180p layer and keeps decoding;
//   3. when nobody wants more than 180p, the publisher stops encoding its top layer (dynacast)
//      and starts again when someone does;
//   4. a paused slot (maxHeight 0) stops receiving video; audio goes on; it resumes.
// Prints a JSON summary; exits 1 on failure.
import { launchChromium, servePage } from "./browser.mjs";

const [project, emulatorHost, room, statsUrl] = process.argv.slice(2);
const [host, port] = emulatorHost.split(":");
const { server, url } = await servePage();
const browser = await launchChromium();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const results = {};
let ok = false;

async function open(session, cfg) {
  const page = await browser.newPage();
  page.on("console", (m) => console.error(`[${session}] ${m.text()}`));
  await page.goto(url);
  await page.waitForFunction(() => typeof window.runSmoke === "function");
  await page.evaluate((c) => window.runSmoke(c), { project, host, port: Number(port), room, session, uid: `uid-${session}`, ...cfg });
  return page;
}
const stats = (page) => page.evaluate(() => window.smokeStats());
const video = (s) => s?.inbound?.find((r) => r.kind === "video" && r.packets > 0) ?? null;
const audio = (s) => s?.inbound?.find((r) => r.kind === "audio") ?? null;

/** Polls `page` until `pred(stats)` holds; returns the time it took (ms). */
async function until(what, page, pred, timeoutMs) {
  const t0 = Date.now();
  let last = null;
  while (Date.now() - t0 < timeoutMs) {
    last = await stats(page);
    if (pred(last)) return Date.now() - t0;
    await sleep(250);
  }
  throw new Error(`${what}: not within ${timeoutMs} ms; last stats ${JSON.stringify(last)}`);
}

async function serverStats() {
  return (await fetch(statsUrl)).json();
}

try {
  const pub = await open("pub", { video: { width: 1280, height: 720 }, audio: true });
  const a = await open("sub-a", { video: false, audio: false });
  const b = await open("sub-b", { video: false, audio: false });

  // 1. No limit: the top layer.
  results.topLayerMs = await until("subscriber A decodes 720p", a, (s) => video(s)?.frameHeight === 720 && video(s).framesDecoded > 0, 30_000);
  const pubStats = await stats(pub);
  results.publisherLayers = pubStats.outbound.filter((r) => r.kind === "video").map((r) => ({ rid: r.rid, frameHeight: r.frameHeight }));

  // 2. ≤ 180 lines: the 180p layer, decoding on.
  await b.evaluate(() => window.receiveAll(180));
  await until("subscriber B receives", b, (s) => (video(s)?.framesDecoded ?? 0) > 0, 20_000);
  results.lowLayerMs = await until("subscriber B settles on 180p", b, (s) => video(s)?.frameHeight === 180, 15_000);
  const before = video(await stats(b)).framesDecoded;
  await sleep(2000);
  const after = video(await stats(b)).framesDecoded;
  results.lowLayerFramesIn2s = after - before;
  if (after - before < 20) throw new Error(`subscriber B decoded only ${after - before} frames in 2 s at 180p`);
  const aNow = video(await stats(a));
  if (aNow.frameHeight !== 720) throw new Error(`subscriber A dropped to ${aNow.frameHeight} while B asked for less`);

  // 3. Nobody wants more than 180p: the top layer pauses at the publisher; then resumes.
  await a.evaluate(() => window.receiveAll(180));
  results.topPausedMs = await until("the publisher stops its top layer", pub, (s) => s.layers && Object.values(s.layers).some((l) => l.f === false), 15_000);
  const sent = async () => (await stats(pub)).outbound.find((r) => r.kind === "video" && r.rid === "f")?.bytes ?? 0;
  const f0 = await sent();
  await sleep(2000);
  const f1 = await sent();
  results.topLayerBytesWhilePaused = f1 - f0;
  if (f1 - f0 > 20_000) throw new Error(`the paused top layer still sent ${f1 - f0} bytes in 2 s`);
  await a.evaluate(() => window.receiveAll(null));
  results.topResumedMs = await until("subscriber A is back on 720p", a, (s) => video(s)?.frameHeight === 720, 20_000);

  // 4. Paused slot: video stops, audio goes on; then resumes.
  await b.evaluate(() => window.receiveAll(0));
  await sleep(1500);
  const p0 = await stats(b);
  await sleep(2000);
  const p1 = await stats(b);
  results.pausedVideoPackets = video(p1).packets - video(p0).packets;
  results.pausedAudioPackets = audio(p1).packets - audio(p0).packets;
  if (results.pausedVideoPackets > 5) throw new Error(`a paused slot still got ${results.pausedVideoPackets} video packets in 2 s`);
  if (results.pausedAudioPackets < 50) throw new Error(`audio stopped with the paused video (${results.pausedAudioPackets} packets in 2 s)`);
  const framesPaused = video(p1).framesDecoded;
  await b.evaluate(() => window.receiveAll(360));
  results.resumedMs = await until("subscriber B resumes", b, (s) => video(s).framesDecoded > framesPaused + 10, 15_000);
  results.resumedHeight = video(await stats(b)).frameHeight;
  // The 360p layer nobody wanted before is encoded again and the slot moves up to it.
  results.upTo360Ms = await until("subscriber B reaches 360p", b, (s) => video(s)?.frameHeight === 360, 15_000);

  const server = await serverStats();
  results.server = { layerSwitches: server.layerSwitches, droppedOtherLayer: server.droppedOtherLayer, keyframeRequests: server.keyframeRequests };
  if (!(server.layerSwitches > 0)) throw new Error("the server switched no layer");
  ok = true;
} catch (e) {
  results.error = String(e?.stack ?? e);
} finally {
  await browser.close();
  server.close();
}
console.log(JSON.stringify({ ok, ...results }, null, 1));
process.exit(ok ? 0 : 1);
