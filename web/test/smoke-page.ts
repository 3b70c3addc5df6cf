// The page of the Chromium smoke test: joins a room with the fake camera through the real
// Firebase SDK (rules enforced by the emulator) and exposes what it receives.
import { initializeApp } from "firebase/app";
import { connectFirestoreEmulator, getFirestore } from "firebase/firestore";
import { RoomSession } from "../src/firesfu";

interface SmokeConfig {
  project: string;
  host: string;
  port: number;
  room: string;
  session: string;
  uid: string;
}

declare global {
  interface Window {
    runSmoke: (cfg: SmokeConfig) => Promise<void>;
    smokeStats: () => Promise<unknown>;
    session?: RoomSession;
  }
}

window.runSmoke = async (cfg) => {
  const app = initializeApp({ projectId: cfg.project, apiKey: "demo-key" });
  const db = getFirestore(app);
  connectFirestoreEmulator(db, cfg.host, cfg.port, { mockUserToken: { user_id: cfg.uid, sub: cfg.uid } });
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 320, height: 240 } });
  window.session = await RoomSession.join({
    db,
    roomId: cfg.room,
    sessionId: cfg.session,
    uid: cfg.uid,
    displayName: "Chromium",
    token: null,
    stream,
    onChange: (s) => console.log(`session ${s.state} rev ${s.revision}/${s.answeredRevision} ${s.error?.code ?? ""}`),
  });
};

window.smokeStats = async () => {
  const s = window.session;
  if (!s) return null;
  const report = await s.pc.getStats();
  const inbound: Record<string, unknown>[] = [];
  const outbound: Record<string, unknown>[] = [];
  report.forEach((r) => {
    if (r.type === "inbound-rtp") inbound.push({ kind: r.kind, mid: r.mid, packets: r.packetsReceived, framesDecoded: r.framesDecoded ?? null });
    if (r.type === "outbound-rtp") outbound.push({ kind: r.kind, packets: r.packetsSent });
  });
  return {
    state: s.state,
    error: s.error,
    connection: s.pc.connectionState,
    revision: s.revision,
    answeredRevision: s.answeredRevision,
    slots: s.slots,
    inbound,
    outbound,
    answer: s.pc.remoteDescription?.sdp ?? null,
  };
};
