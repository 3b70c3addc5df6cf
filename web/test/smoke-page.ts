// The page of the Chromium smoke test: joins a room with the fake camera through the real
// Firebase SDK (rules enforced by the emulator) and exposes what it receives.
import { initializeApp } from "firebase/app";
import { connectFirestoreEmulator, initializeFirestore } from "firebase/firestore";
import { RoomSession, selectedPath } from "../src/firesfu";

interface SmokeConfig {
  project: string;
  host: string;
  port: number;
  room: string;
  session: string;
  uid: string;
  /** For the connectivity benchmark (TURN). */
  iceServers?: RTCIceServer[];
  /** The camera's size (default 320×240); `false`: publish no video. */
  video?: { width: number; height: number } | false;
  /** Publish audio (default true). */
  audio?: boolean;
  /** Publish video in simulcast (default: the app's default, on). */
  simulcast?: boolean;
  /** Publish video in 3 SSRC-signalled simulcast layers (`a=ssrc-group:SIM`, SDP munging, as
   * pre-rid clients do) instead of rids; implies `simulcast: false`. */
  ssrcSimulcast?: boolean;
}

/**
 * Legacy simulcast by SDP munging: the first sending video m-section's SSRC (and its RTX, from
 * `a=ssrc-group:FID`) gets two more layers, declared in `a=ssrc-group:SIM` low to high, each
 * with its RTX pair and the same cname and msid. An offer that has a SIM group already (a
 * re-offer) is returned as it is.
 */
function ssrcSimulcast(sdp: string): string {
  if (sdp.includes("a=ssrc-group:SIM")) return sdp;
  const sections = sdp.split(/(?=\r\nm=)/);
  const i = sections.findIndex((m) => m.startsWith("\r\nm=video") && /a=(sendonly|sendrecv)/.test(m) && m.includes("a=ssrc-group:FID"));
  if (i < 0) return sdp;
  const m = sections[i];
  const [, primary, rtx] = m.match(/a=ssrc-group:FID (\d+) (\d+)/)!;
  const attrs = [...m.matchAll(new RegExp(`a=ssrc:${primary} (.*)`, "g"))].map((x) => x[1].trim());
  const fresh = () => String(1 + Math.floor(Math.random() * 0xfffffff0));
  const layers = [[primary, rtx], [fresh(), fresh()], [fresh(), fresh()]];
  let extra = `\r\na=ssrc-group:SIM ${layers.map(([p]) => p).join(" ")}`;
  for (const [p, r] of layers.slice(1)) {
    extra += `\r\na=ssrc-group:FID ${p} ${r}`;
    for (const ssrc of [p, r]) for (const a of attrs) extra += `\r\na=ssrc:${ssrc} ${a}`;
  }
  const tail = m.endsWith("\r\n") ? "\r\n" : "";
  sections[i] = m.slice(0, m.length - tail.length) + extra + tail;
  return sections.join("");
}

declare global {
  interface Window {
    runSmoke: (cfg: SmokeConfig) => Promise<void>;
    benchJoins: (cfg: SmokeConfig, joins: number) => Promise<{ answer: number[]; firstMedia: number[]; firstFrame: number[]; paths: string[] }>;
    smokeStats: () => Promise<unknown>;
    /** The selected ICE path of the session (for shaping its traffic in tests). */
    smokePath: () => Promise<unknown>;
    /** Asks for at most `maxHeight` on every video receive slot (`null`: no limit). */
    receiveAll: (maxHeight: number | null) => void;
    session?: RoomSession;
  }
}

function firestore(cfg: SmokeConfig) {
  const app = initializeApp({ projectId: cfg.project, apiKey: "demo-key" });
  const db = initializeFirestore(app, {});
  connectFirestoreEmulator(db, cfg.host, cfg.port, { mockUserToken: { user_id: cfg.uid, sub: cfg.uid } });
  return db;
}

// Joins `joins` times in a row, measuring offer written → answer applied, offer written →
// first RTP packet of the room's media (the remote track unmutes on its first packet) and
// offer written → first video frame decoded; records the path each join took.
window.benchJoins = async (cfg, joins) => {
  const db = firestore(cfg);
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 320, height: 240 } });
  const answer: number[] = [];
  const firstMedia: number[] = [];
  const firstFrame: number[] = [];
  const paths: string[] = [];
  for (let i = 0; i < joins; i++) {
    let unmuted = 0;
    let resolveMedia: () => void = () => {};
    const media = new Promise<void>((r) => (resolveMedia = r));
    const session = await RoomSession.join({
      db, roomId: cfg.room, sessionId: `${cfg.session}-${i}`, uid: cfg.uid, displayName: "Chromium",
      token: null, stream, initialSlots: { audio: 1, video: 1 }, iceServers: cfg.iceServers ?? [],
      onChange: (s) => console.log(`${performance.now().toFixed(0)} join ${i}: ${s.state} ${s.revision}/${s.answeredRevision}`),
      onTrackReady: (track: MediaStreamTrack) => {
        track.addEventListener("unmute", () => { if (!unmuted) { unmuted = performance.now(); resolveMedia(); } });
      },
    });
    await Promise.race([media, new Promise((r) => setTimeout(r, 10_000))]);
    if (!unmuted) {
      const rest = await fetch(`http://${cfg.host}:${cfg.port}/v1/projects/${cfg.project}/databases/(default)/documents/rooms/${cfg.room}/sessions/${cfg.session}-${i}`, { headers: { Authorization: "Bearer owner" } }).then((r) => r.json());
      throw new Error(`join ${i}: no media within 10 s (SDK state ${session.state}, REST state ${JSON.stringify(rest.fields?.state)}, REST updateTime ${rest.updateTime}, pc ${session.pc.signalingState}/${session.pc.connectionState})`);
    }
    let decoded = 0;
    for (let t = 0; t < 1000 && !decoded; t++) {
      (await session.pc.getStats()).forEach((r) => {
        if (r.type === "inbound-rtp" && r.kind === "video" && r.framesDecoded > 0 && !decoded) decoded = performance.now();
      });
      if (!decoded) await new Promise((r) => setTimeout(r, 10));
    }
    if (!decoded) throw new Error(`join ${i}: no video frame decoded within 10 s of the first packet`);
    const path = await selectedPath(session.pc);
    answer.push(session.answeredAt - session.offerWrittenAt);
    firstMedia.push(unmuted - session.offerWrittenAt);
    firstFrame.push(decoded - session.offerWrittenAt);
    paths.push(path ? `${path.local.type}/${path.local.relayProtocol ?? path.local.protocol}` : "none");
    await session.leave();
    await new Promise((r) => setTimeout(r, 100));
  }
  return { answer, firstMedia, firstFrame, paths };
};

window.runSmoke = async (cfg) => {
  const db = firestore(cfg);
  const video = cfg.video === false ? false : (cfg.video ?? { width: 320, height: 240 });
  const audio = cfg.audio !== false;
  const stream = audio || video ? await navigator.mediaDevices.getUserMedia({ audio, video }) : undefined;
  const publishing = stream && stream.getTracks().length > 0;
  window.session = await RoomSession.join({
    db,
    roomId: cfg.room,
    sessionId: cfg.session,
    uid: cfg.uid,
    displayName: `Chromium ${cfg.session}`,
    token: null,
    stream: publishing ? stream : undefined,
    simulcast: cfg.ssrcSimulcast ? false : cfg.simulcast,
    transformOffer: cfg.ssrcSimulcast ? ssrcSimulcast : undefined,
    // A receive-only page starts with one slot of each kind (the room asks for more).
    initialSlots: publishing ? undefined : { audio: 1, video: 1 },
    onChange: (s) => console.log(`session ${s.state} rev ${s.revision}/${s.answeredRevision} ${s.error?.code ?? ""}`),
  });
  if (cfg.ssrcSimulcast) {
    // Munged layers have no scale of their own (a single active one is sent at full size):
    // give them the reference client's, as munging clients do.
    const sender = window.session.pc.getTransceivers().find((t) => t.sender.track?.kind === "video")?.sender;
    const params = sender?.getParameters();
    if (sender && params) {
      params.encodings.forEach((e, i) => {
        e.scaleResolutionDownBy = [4, 2, 1][i] ?? 1;
        e.maxBitrate = [150_000, 500_000, 1_500_000][i] ?? 1_500_000;
      });
      await sender.setParameters(params);
    }
  }
};

window.smokePath = async () => (window.session ? selectedPath(window.session.pc) : null);

window.receiveAll = (maxHeight) => {
  const s = window.session;
  if (!s) return;
  for (const t of s.pc.getTransceivers()) {
    if (t.direction === "recvonly" && t.receiver.track.kind === "video" && t.mid) {
      s.setReceive(t.mid, maxHeight === null ? null : { maxHeight });
    }
  }
};

window.smokeStats = async () => {
  const s = window.session;
  if (!s) return null;
  const report = await s.pc.getStats();
  const inbound: Record<string, unknown>[] = [];
  const outbound: Record<string, unknown>[] = [];
  report.forEach((r) => {
    if (r.type === "inbound-rtp") {
      inbound.push({
        kind: r.kind, mid: r.mid, packets: r.packetsReceived, framesDecoded: r.framesDecoded ?? null,
        frameHeight: r.frameHeight ?? null, bytes: r.bytesReceived, freezes: r.freezeCount ?? null,
        lost: r.packetsLost ?? null, audioLevel: r.audioLevel ?? null,
      });
    }
    if (r.type === "outbound-rtp") {
      outbound.push({ kind: r.kind, mid: r.mid, rid: r.rid ?? null, ssrc: r.ssrc, packets: r.packetsSent, retransmitted: r.retransmittedPacketsSent ?? null, bytes: r.bytesSent, frameHeight: r.frameHeight ?? null, active: r.active ?? null });
    }
  });
  return {
    state: s.state,
    error: s.error,
    connection: s.pc.connectionState,
    revision: s.revision,
    answeredRevision: s.answeredRevision,
    slots: s.slots,
    layers: s.layers,
    receive: s.receive,
    inbound,
    outbound,
    answer: s.pc.remoteDescription?.sdp ?? null,
  };
};
