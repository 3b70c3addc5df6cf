// Adaptation with real Chromium: a publisher sends its 1280×720 fake camera in three simulcast
// layers; two receive-only subscribers ask for different sizes. Checks, from getStats and the
// session documents, what a user would see:
//   1. a subscriber with no limit decodes the top layer (720p);
//   2. one asking for ≤ 180 lines gets the 180p layer and keeps decoding;
//   3. when nobody wants more than 180p, the publisher stops encoding its top layer (dynacast)
//      and starts again when someone does;
//   4. a paused slot (maxHeight 0) stops receiving video; audio goes on; it resumes;
//   5. a subscriber whose link is shaped to ~400 kbit/s (tc tbf on the server's egress toward
//      its port) settles on a lower layer, keeps decoding, and climbs back once the limit is
//      lifted; the other subscriber is not affected;
//   6. a link too thin for any video (120 kbit/s): audio keeps arriving, video resumes after;
//   8. a lossy uplink (nftables drops 3% of the publisher's packets): each simulcast layer's
//      losses are retransmitted on its RTX stream and taken by the server; decoding goes on;
//   9. SSRC-signalled simulcast (a=ssrc-group:SIM, by SDP munging, as pre-rid clients do):
//      the layers are told apart by SSRC, chosen by maxHeight, and paused by dynacast;
//   7. the dominant speaker: of two publishers, the one whose microphone plays speech is named
//      in rooms/{room}/live/speaker within a second or so, and stays named (no flapping).
// Prints a JSON summary; exits 1 on failure.
import { execFileSync } from "node:child_process";
import { launchChromium, servePage } from "./browser.mjs";

const [project, emulatorHost, room, statsUrl, speechWav, silenceWav, speakRoom] = process.argv.slice(2);
const SERVER_NS = process.env.FIRESFU_SERVER_NS;
const inServer = (cmd, args, opts = {}) => execFileSync("ip", ["netns", "exec", SERVER_NS, cmd, ...args], opts);

/** Shapes what the server sends to the client's UDP `port` to `rate` (tc: an htb class with a
 * tbf leaf, chosen by a u32 match on the port; everything else passes); `null` lifts it. */
function shape(port, rate) {
  try { inServer("tc", ["qdisc", "del", "dev", "veth-srv", "root"], { stdio: "ignore" }); } catch { /* none yet */ }
  if (rate === null) return;
  const tc = (...args) => inServer("tc", args, { stdio: ["ignore", "ignore", "pipe"] });
  tc("qdisc", "add", "dev", "veth-srv", "root", "handle", "1:", "htb", "default", "10", "r2q", "1000");
  tc("class", "add", "dev", "veth-srv", "parent", "1:", "classid", "1:10", "htb", "rate", "1gbit");
  tc("class", "add", "dev", "veth-srv", "parent", "1:", "classid", "1:20", "htb", "rate", rate, "ceil", rate);
  tc("qdisc", "add", "dev", "veth-srv", "parent", "1:20", "handle", "20:", "tbf", "rate", rate, "burst", "8kb", "latency", "150ms");
  tc("filter", "add", "dev", "veth-srv", "parent", "1:", "protocol", "ip", "prio", "1", "u32",
    "match", "ip", "dport", String(port), "0xffff", "flowid", "1:20");
}
/** Drops `percent` % of the UDP packets the server receives from the client's `port`
 * (nftables in the server's namespace); `null` stops. */
function lossy(port, percent) {
  try { inServer("nft", ["delete", "table", "inet", "fsfu_loss"], { stdio: "ignore" }); } catch { /* none yet */ }
  if (port === null) return;
  inServer("nft", ["-f", "-"], {
    input: `table inet fsfu_loss {\n chain in {\n  type filter hook input priority 0;\n  udp sport ${port} numgen random mod 100 < ${percent} drop\n }\n}\n`,
    stdio: ["pipe", "ignore", "pipe"],
  });
}
const [host, port] = emulatorHost.split(":");
const simRoom = "sim";
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
  // Decoding goes on at 180p. Not a frame rate: on two loaded cores Chromium's encoder drops
  // frames of its three layers (7 fps once in make test), which is the publisher's business.
  const before = video(await stats(b)).framesDecoded;
  await sleep(4000);
  const after = video(await stats(b)).framesDecoded;
  results.lowLayerFramesIn4s = after - before;
  if (after - before < 12) throw new Error(`subscriber B decoded only ${after - before} frames in 4 s at 180p`);
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

  // 5. A thin link (~400 kbit/s) toward B: a lower layer, decoding on; back up once lifted.
  await b.evaluate(() => window.receiveAll(null));
  await a.evaluate(() => window.receiveAll(null));
  await until("both subscribers on 720p", b, (s) => video(s)?.frameHeight === 720, 20_000);
  const bPath = await b.evaluate(() => window.smokePath());
  results.shapedPort = bPath.local.port;
  shape(bPath.local.port, "400kbit");
  const shapedAt = Date.now();
  results.thinLink = {};
  results.thinLink.settleMs = await until("B settles below 720p on a 400 kbit/s link", b, (s) => (video(s)?.frameHeight ?? 720) <= 360, 20_000);
  const t0 = await stats(b);
  await sleep(5000);
  const t1 = await stats(b);
  results.thinLink.heightAfter = video(t1).frameHeight;
  results.thinLink.framesDecodedIn5s = video(t1).framesDecoded - video(t0).framesDecoded;
  results.thinLink.receivedKbps = Math.round(((video(t1).bytes + audio(t1).bytes) - (video(t0).bytes + audio(t0).bytes)) * 8 / 5 / 1000);
  results.thinLink.freezes = video(t1).freezes;
  results.thinLink.lost = video(t1).lost;
  results.thinLink.serverEstimate = (await serverStats()).downlinks?.find((d) => d.session === "sub-b")?.estimateBps ?? null;
  if (results.thinLink.framesDecodedIn5s < 10) throw new Error(`B decoded only ${results.thinLink.framesDecodedIn5s} frames in 5 s on the thin link`);
  results.thinLink.otherSubscriberHeight = video(await stats(a)).frameHeight;
  if (results.thinLink.otherSubscriberHeight !== 720) throw new Error(`A dropped to ${results.thinLink.otherSubscriberHeight} because of B's link`);
  shape(null, null);
  results.thinLink.recoverMs = await until("B climbs back to 720p after the limit is lifted", b, (s) => video(s)?.frameHeight === 720, 45_000);
  results.thinLink.totalMs = Date.now() - shapedAt;

  // 6. Too thin for any video: audio keeps flowing, video resumes after.
  shape(bPath.local.port, "120kbit");
  const sStart = await stats(b);
  // The estimate falls, video pauses; the one attempt to resume it (a fresh GCC start) that
  // runs into the limit makes the next wait longer: measure after it.
  await sleep(12_000);
  const s0 = await stats(b);
  await sleep(4000);
  const s1 = await stats(b);
  results.severe = {
    audioPacketsIn16s: audio(s1).packets - audio(sStart).packets,
    audioPacketsIn4s: audio(s1).packets - audio(s0).packets,
    videoFramesIn4s: video(s1).framesDecoded - video(s0).framesDecoded,
    serverEstimate: (await serverStats()).downlinks?.find((d) => d.session === "sub-b")?.estimateBps ?? null,
  };
  // Audio goes on (the figure is reported: retransmissions of the paused video still compete).
  if (results.severe.audioPacketsIn4s < 100) throw new Error(`audio did not keep flowing on a 120 kbit/s link: ${results.severe.audioPacketsIn4s} packets in 4 s`);
  const framesThin = video(s1).framesDecoded;
  shape(null, null);
  results.severe.videoBackMs = await until("video resumes after severe congestion", b, (s) => video(s).framesDecoded > framesThin + 30, 30_000);

  // 8. A lossy uplink: retransmissions on each layer's RTX stream (rrid) reach the server.
  const pubPath = await pub.evaluate(() => window.smokePath());
  const retransmitted = async () => (await stats(pub)).outbound
    .filter((r) => r.kind === "video").reduce((n, r) => n + (r.retransmitted ?? 0), 0);
  const late0 = (await serverStats()).publishedLate;
  const rtx0 = await retransmitted();
  const v0 = video(await stats(a));
  lossy(pubPath.local.port, 3);
  await sleep(8000);
  lossy(null, null);
  const v1 = video(await stats(a));
  results.lossyUplink = {
    retransmittedByPublisher: (await retransmitted()) - rtx0,
    lateAtServer: (await serverStats()).publishedLate - late0,
    framesDecodedIn8s: v1.framesDecoded - v0.framesDecoded,
    freezes: v1.freezes - v0.freezes,
    heightAfter: v1.frameHeight,
  };
  if (results.lossyUplink.retransmittedByPublisher < 10) throw new Error(`the publisher retransmitted only ${results.lossyUplink.retransmittedByPublisher} packets at 3% loss`);
  if (results.lossyUplink.lateAtServer < results.lossyUplink.retransmittedByPublisher / 2) {
    throw new Error(`the server took ${results.lossyUplink.lateAtServer} of ${results.lossyUplink.retransmittedByPublisher} retransmissions`);
  }
  if (results.lossyUplink.framesDecodedIn8s < 100) throw new Error(`A decoded only ${results.lossyUplink.framesDecodedIn8s} frames in 8 s of a lossy uplink`);

  // 9. SSRC-signalled simulcast: layers by SSRC, chosen by maxHeight, paused by dynacast.
  // The first room's three pages leave first: on two cores their encoders and decoders would
  // make Chromium's CPU adaptation drop the new publisher's upper layers.
  for (const page of [pub, a, b]) await page.close();
  const spub = await open("sim-pub", { room: simRoom, video: { width: 1280, height: 720 }, audio: false, ssrcSimulcast: true });
  const ssub = await open("sim-sub", { room: simRoom, video: false, audio: false });
  const sim = (results.ssrcSimulcast = {});
  sim.publisher = () => stats(spub).then((s) => s.outbound.map((r) => ({ ssrc: r.ssrc, height: r.frameHeight, bytes: r.bytes, active: r.active })));
  try {
    sim.topMs = await until("the subscriber decodes the 720p SSRC layer", ssub, (s) => video(s)?.frameHeight === 720, 30_000);
  } catch (e) {
    throw new Error(`${e.message}; the publisher's streams: ${JSON.stringify(await sim.publisher())}`);
  }
  delete sim.publisher;
  const streams = (await stats(spub)).outbound.filter((r) => r.kind === "video");
  sim.publisherStreams = streams.map((r) => ({ ssrc: r.ssrc, frameHeight: r.frameHeight }));
  if (streams.length !== 3) throw new Error(`the munged offer made ${streams.length} video streams, not 3`);
  await ssub.evaluate(() => window.receiveAll(180));
  sim.lowMs = await until("the subscriber settles on the 180p SSRC layer", ssub, (s) => video(s)?.frameHeight === 180, 15_000);
  sim.topPausedMs = await until("the publisher is told to stop layer 2", spub, (s) => s.layers && Object.values(s.layers).some((l) => l["2"] === false), 15_000);
  const top = streams.reduce((x, y) => ((y.frameHeight ?? 0) > (x.frameHeight ?? 0) ? y : x));
  const topBytes = async () => (await stats(spub)).outbound.find((r) => r.ssrc === top.ssrc)?.bytes ?? 0;
  await sleep(1000);
  const b0 = await topBytes();
  await sleep(2000);
  sim.topBytesWhilePaused = (await topBytes()) - b0;
  if (sim.topBytesWhilePaused > 20_000) throw new Error(`the paused SSRC layer still sent ${sim.topBytesWhilePaused} bytes in 2 s`);
  await ssub.evaluate(() => window.receiveAll(null));
  sim.backToTopMs = await until("the subscriber is back on 720p", ssub, (s) => video(s)?.frameHeight === 720, 20_000);

  const server = await serverStats();
  results.server = { layerSwitches: server.layerSwitches, droppedOtherLayer: server.droppedOtherLayer, keyframeRequests: server.keyframeRequests };
  if (!(server.layerSwitches > 0)) throw new Error("the server switched no layer");
  ok = true;
} catch (e) {
  results.error = String(e?.stack ?? e);
  try { results.serverAtFailure = await serverStats(); } catch { /* gone */ }
} finally {
  try { shape(null, null); } catch { /* the namespace may be gone */ }
  try { lossy(null, null); } catch { /* the namespace may be gone */ }
  await browser.close();
}

// 7. The dominant speaker, in a room of its own: one publisher plays speech, one silence.
if (ok && speechWav) {
  ok = false;
  const browsers = [];
  try {
    const speakerDoc = async () => {
      const r = await fetch(`http://${host}:${port}/v1/projects/${project}/databases/(default)/documents/rooms/${speakRoom}/live/speaker`, { headers: { Authorization: "Bearer owner" } });
      if (r.status === 404) return null;
      const d = await r.json();
      return { session: d.fields?.session?.stringValue ?? null, updateTime: d.updateTime };
    };
    const join = async (session, wav) => {
      const br = await launchChromium([], [`--use-file-for-fake-audio-capture=${wav}`]);
      browsers.push(br);
      const page = await br.newPage();
      page.on("console", (m) => console.error(`[${session}] ${m.text()}`));
      await page.goto(url);
      await page.waitForFunction(() => typeof window.runSmoke === "function");
      await page.evaluate((c) => window.runSmoke(c), { project, host, port: Number(port), room: speakRoom, session, uid: `uid-${session}`, video: false, audio: true });
      return page;
    };
    const quiet = await join("quiet", silenceWav);
    const talker = await join("talker", speechWav);
    await until("the talker is connected", talker, (s) => s?.state === "connected", 20_000);
    const connectedAt = Date.now();
    let doc = null;
    while (Date.now() - connectedAt < 10_000) {
      doc = await speakerDoc();
      if (doc?.session === "talker") break;
      await sleep(100);
    }
    if (doc?.session !== "talker") throw new Error(`the speaker is not the talker: ${JSON.stringify(doc)}`);
    results.speaker = { namedMs: Date.now() - connectedAt };
    const first = doc.updateTime;
    const changes = new Set([first]);
    for (let i = 0; i < 40; i++) {
      await sleep(250);
      const d = await speakerDoc();
      changes.add(d.updateTime);
      if (d.session !== "talker") throw new Error(`the speaker changed to ${d.session}`);
    }
    results.speaker.writesIn10s = changes.size - 1;
    if (results.speaker.writesIn10s > 0) throw new Error(`the speaker document was rewritten ${results.speaker.writesIn10s} times while nothing changed`);
    void quiet;
    ok = true;
  } catch (e) {
    results.error = String(e?.stack ?? e);
  } finally {
    for (const br of browsers) await br.close();
  }
}
server.close();
console.log(JSON.stringify({ ok, ...results }, null, 1));
process.exit(ok ? 0 : 1);
