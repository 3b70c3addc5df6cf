// The meeting app on hostile networks (driven by tests/connectivity/browser.sh, which runs the
// servers in another network namespace). Alice and Bob meet while nftables in the server's
// namespace drops more and more of what comes from the browser's address; each step asserts
// the path media takes (the selected ICE candidate pair), that media flows both ways, and that
// the session survived (same session id, same roster entries: nobody saw anyone leave).
// Prints a JSON summary; exits 1 on the first failure.
import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import { mkdirSync } from "node:fs";
import { launchChromium } from "./browser.mjs";
import { open as openPage, register, stepper, TIMEOUT } from "./meeting-kit.mjs";

const [url, artifacts] = process.argv.slice(2);
mkdirSync(artifacts, { recursive: true });
const SERVER_NS = process.env.FIRESFU_SERVER_NS;
const EMULATOR = process.env.FIRESFU_EMULATOR;
const PROJECT = process.env.FIRESFU_PROJECT;
const TURN_SECRET = process.env.FIRESFU_TURN_SECRET;
const suffix = Math.random().toString(36).slice(2, 8);
const users = {
  alice: { name: `alice-${suffix}`, password: "correct horse battery" },
  bob: { name: `bob-${suffix}`, password: "staple battery horse" },
  carol: { name: `carol-${suffix}`, password: "battery staple horse" },
};
const summary = { steps: [], paths: {} };
const started = Date.now();
const step = stepper(summary, started);

/** Drops what the browser's addresses send to these ports of the server namespace. */
function network(name, drops) {
  const lines = [];
  for (const [family, address] of [["ip", "10.78.0.2"], ["ip6", "fd78::2"]]) {
    for (const rule of drops[family] ?? []) lines.push(`${family} saddr ${address} ${rule} drop`);
  }
  const ruleset = `table inet fsfu_test {\n chain input {\n  type filter hook input priority 0; policy accept;\n  ${lines.join("\n  ")}\n }\n}\n`;
  try {
    execFileSync("ip", ["netns", "exec", SERVER_NS, "nft", "delete", "table", "inet", "fsfu_test"], { stdio: "ignore" });
  } catch { /* none yet */ }
  execFileSync("ip", ["netns", "exec", SERVER_NS, "nft", "-f", "-"], { input: ruleset });
  step(`network: ${name}`);
}
const both = (rules) => ({ ip: rules, ip6: rules });

const open = (browser, who) => openPage(browser, url, { width: 960, height: 640 }, who);

async function until(what, fn, timeout = TIMEOUT) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Video frames `page` decoded from `from`, and whether their audio arrives. */
async function media(page, from) {
  const inbound = (await page.evaluate(() => window.firesfuInbound?.())) ?? [];
  const mine = inbound.filter((r) => r.participant === from.name);
  return {
    frames: mine.filter((r) => r.kind === "video").reduce((n, r) => n + (r.framesDecoded ?? 0), 0),
    audio: mine.filter((r) => r.kind === "audio").reduce((n, r) => n + (r.packets ?? 0), 0),
  };
}

/** Waits until `page` decodes `frames` more video frames from `from` (and gets audio). */
async function flows(page, from, frames = 30) {
  const before = await media(page, from);
  return until(`media from ${from.name} resumes`, async () => {
    const now = await media(page, from);
    return now.frames >= before.frames + frames && now.audio > before.audio && now;
  });
}

/** The selected ICE path of `page`, once `ok(path)` holds. */
async function path(page, who, what, ok) {
  let last = null;
  try {
    return await until(`${who}: ${what}`, async () => {
      last = await page.evaluate(() => window.firesfuPath?.());
      return last && ok(last) ? last : null;
    }, 40_000);
  } catch (e) {
    throw new Error(`${e.message}; last path: ${JSON.stringify(last)}`);
  }
}

const session = (page) => page.evaluate(() => window.firesfuDebug?.());

/** name → createTime of the room's participant documents (emulator REST, as an admin). */
async function roster(roomId) {
  const r = await fetch(`http://${EMULATOR}/v1/projects/${PROJECT}/databases/(default)/documents/rooms/${roomId}/participants`,
    { headers: { Authorization: "Bearer owner" } }).then((r) => r.json());
  return Object.fromEntries((r.documents ?? []).map((d) => [d.name.split("/").pop(), d.createTime]).sort());
}

/** The session survived a network change: same id, same roster documents. */
async function sameSession(pages, roomId, before) {
  for (const [who, page] of Object.entries(pages)) {
    const s = await session(page);
    if (s.sessionId !== before.sessions[who]) throw new Error(`${who} has a new session ${s.sessionId} (was ${before.sessions[who]})`);
  }
  const now = await roster(roomId);
  if (JSON.stringify(now) !== JSON.stringify(before.roster)) {
    throw new Error(`the roster changed: ${JSON.stringify(before.roster)} → ${JSON.stringify(now)}`);
  }
}

/** Gathers relay candidates from the TURN servers given (as a client would). */
function gather(page, iceServers) {
  return page.evaluate(async (servers) => {
    const pc = new RTCPeerConnection({ iceServers: servers, iceTransportPolicy: "relay" });
    const out = { relay: 0, errors: [] };
    pc.onicecandidate = (e) => { if (e.candidate?.type === "relay") out.relay += 1; };
    pc.onicecandidateerror = (e) => out.errors.push(e.errorCode);
    pc.createDataChannel("probe");
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, 8000);
      pc.onicegatheringstatechange = () => {
        if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
      };
    });
    pc.close();
    return out;
  }, iceServers);
}

const browser = await launchChromium([new URL(url).origin]);
let ok = false;
const pages = {};
try {
  pages.alice = await open(browser, "alice");
  pages.bob = await open(browser, "bob");
  const { alice, bob } = pages;

  const TURN = ["udp dport 3478", "tcp dport 3478"];
  network("UDP to the server blocked (and no TURN)", both(["udp dport 4443", ...TURN]));
  step("both register; alice creates a room");
  await register(alice, users.alice);
  await register(bob, users.bob);
  const roomName = `Hostile ${suffix}`;
  await alice.click("button[name=create-room]");
  await alice.fill("input[name=room-name]", roomName);
  await alice.getByRole("button", { name: "Create" }).click();
  await alice.locator("video.preview").waitFor();
  const roomId = decodeURIComponent(new URL(alice.url()).hash.split("/").pop());

  step("both join through the web app: ICE-TCP");
  await alice.click("button[name=join]");
  await bob.locator("article.room-card", { hasText: roomName }).click();
  await bob.click("button[name=join]");
  for (const [who, page, other] of [["alice", alice, users.bob], ["bob", bob, users.alice]]) {
    await flows(page, other);
    summary.paths[`${who}.udpBlocked`] = await path(page, who, "media over TCP", (p) => p.local.protocol === "tcp" && p.remote.type === "host");
  }
  await alice.screenshot({ path: `${artifacts}/ice-tcp.png` });
  const before = {
    sessions: { alice: (await session(alice)).sessionId, bob: (await session(bob)).sessionId },
    roster: await roster(roomId),
  };
  if (Object.keys(before.roster).length !== 2) throw new Error(`roster: ${JSON.stringify(before.roster)}`);
  const revision = async (page) => (await session(page)).answered;

  network("UDP and TCP 4443 blocked (only the second ICE-TCP port, 5443, passes)", both(["udp dport 4443", "tcp dport 4443", ...TURN]));
  step("the browsers move to the second ICE-TCP port; the server follows their nomination");
  for (const [who, page] of [["alice", alice], ["bob", bob]]) {
    summary.paths[`${who}.secondPort`] = await path(page, who, "media over TCP 5443", (p) => p.local.protocol === "tcp" && p.remote.port === 5443);
  }
  await flows(alice, users.bob);
  await flows(bob, users.alice);
  await sameSession({ alice, bob }, roomId, before);

  step("alice restarts ICE mid-call (a re-offer with iceRestart): same session, media resumes");
  const aliceRevision = await revision(alice);
  await alice.evaluate(() => window.firesfuRestartIce());
  await until("alice's restart answered", async () => (await revision(alice)) > aliceRevision);
  await flows(alice, users.bob);
  await flows(bob, users.alice);
  await sameSession({ alice, bob }, roomId, before);

  network("every media port blocked: only the TURN server is reachable",
    both(["udp dport 4443", "tcp dport 4443", "tcp dport 5443"]));
  step("the web app restarts ICE by itself and gathers relay candidates (the sidecar's TURN credentials)");
  const revisions = { alice: await revision(alice), bob: await revision(bob) };
  for (const [who, page] of [["alice", alice], ["bob", bob]]) {
    summary.paths[`${who}.relay`] = await path(page, who, "media through the relay", (p) => p.local.type === "relay");
    if ((await revision(page)) <= revisions[who]) throw new Error(`${who} reached the relay without an ICE restart`);
  }
  await flows(alice, users.bob);
  await flows(bob, users.alice);
  await sameSession({ alice, bob }, roomId, before);

  step("carol joins afresh while only the relay works");
  pages.carol = await open(browser, "carol");
  const carol = pages.carol;
  await register(carol, users.carol);
  await carol.locator("article.room-card", { hasText: roomName }).click();
  await carol.click("button[name=join]");
  await flows(carol, users.alice);
  await flows(carol, users.bob);
  await flows(alice, users.carol);
  summary.paths["carol.relay"] = await path(carol, "carol", "a relayed first join", (p) => p.local.type === "relay");

  step("TURN credentials: the sidecar's work, forged and expired ones are refused by coturn");
  const join = await carol.evaluate(async (id) => {
    const token = sessionStorage.getItem("firesfu.accessToken");
    const r = await fetch(`/v1/rooms/${id}/join`, { method: "POST", headers: { Authorization: `Bearer ${token}` } });
    return r.json();
  }, roomId);
  const turn = join.iceServers.find((s) => s.urls.some((u) => u.startsWith("turn:")));
  const uid = turn.username.split(":")[1];
  const expiredUser = `${Math.floor(Date.now() / 1000) - 60}:${uid}`;
  const expired = crypto.createHmac("sha1", TURN_SECRET).update(expiredUser).digest("base64");
  summary.turn = {
    valid: await gather(carol, [turn]),
    forged: await gather(carol, [{ ...turn, credential: crypto.randomBytes(20).toString("base64") }]),
    expired: await gather(carol, [{ ...turn, username: expiredUser, credential: expired }]),
  };
  if (summary.turn.valid.relay < 1) throw new Error(`no relay with the sidecar's credentials: ${JSON.stringify(summary.turn)}`);
  for (const bad of ["forged", "expired"]) {
    const g = summary.turn[bad];
    if (g.relay !== 0 || !g.errors.includes(401)) throw new Error(`${bad} credentials were not refused with 401: ${JSON.stringify(g)}`);
  }
  await carol.click("button[name=leave]");
  await carol.context().close();
  delete pages.carol;
  const afterCarol = { ...before, roster: await until("carol's entry gone", async () => {
    const r = await roster(roomId);
    return Object.keys(r).length === 2 && r;
  }) };

  network("IPv4 to the media and TURN ports blocked: only IPv6 reaches the server",
    { ip: ["udp dport 4443", "tcp dport 4443", "tcp dport 5443", "udp dport 3478", "tcp dport 3478"] });
  step("ICE restarts onto IPv6");
  for (const [who, page] of [["alice", alice], ["bob", bob]]) {
    summary.paths[`${who}.ipv6`] = await path(page, who, "media over IPv6", (p) => p.remote.address?.includes(":") && p.local.type !== "relay");
  }
  await flows(alice, users.bob);
  await flows(bob, users.alice);
  await sameSession({ alice, bob }, roomId, afterCarol);
  await alice.screenshot({ path: `${artifacts}/ipv6.png` });
  ok = true;
} catch (e) {
  summary.error = String(e?.stack ?? e);
  try {
    summary.serverSockets = execFileSync("ip", ["netns", "exec", SERVER_NS, "ss", "-tan"]).toString().split("\n");
  } catch { /* best effort */ }
  for (const [who, page] of Object.entries(pages)) {
    await page.screenshot({ path: `${artifacts}/failure-${who}.png` }).catch(() => {});
    summary[`debug.${who}`] = await page.evaluate(() => window.firesfuDebug?.()).catch(() => null);
  }
} finally {
  await browser.close();
}
summary.ok = ok;
summary.totalMs = Date.now() - started;
console.log(JSON.stringify(summary, null, 1));
process.exit(ok ? 0 : 1);
