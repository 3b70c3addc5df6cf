// The browser side of the firesfu signalling protocol v1 (docs/signalling.md): join a room by
// writing an offer into a Firestore session document, apply the server's answer, re-offer when
// the server wants more receive slots, restart ICE when the network changes, leave.

import {
  Firestore,
  Timestamp,
  doc,
  onSnapshot,
  serverTimestamp,
  setDoc,
  updateDoc,
  type DocumentData,
  type Unsubscribe,
} from "firebase/firestore";

export interface SlotInfo {
  participant: string;
  displayName: string;
  kind: "audio" | "video";
  sourceMid: string;
}

export interface SessionError {
  code: string;
  message: string;
  revision: number | null;
}

export interface JoinOptions {
  db: Firestore;
  roomId: string;
  sessionId?: string;
  uid: string;
  displayName: string;
  token: string | null;
  /** The sidecar's `traceparent`, so the server's join span joins the same trace. */
  traceparent?: string;
  /** Tracks to publish (sendonly). */
  stream?: MediaStream;
  /** Kinds to publish even when `stream` has no track of that kind (yet). */
  sendSlots?: ("audio" | "video")[];
  /** Which published tracks are on; mirrored into the roster for the other participants. */
  media?: { audio: boolean; video: boolean };
  /** Receive slots to offer up front (more are added when the server asks). */
  initialSlots?: { audio: number; video: number };
  /** The join response's `iceServers` (STUN, and TURN with short-lived credentials). */
  iceServers?: RTCIceServer[];
  onChange?: (session: RoomSession) => void;
  /** ICE restarts could not bring the connection back: join again with a new session. */
  onLost?: (session: RoomSession) => void;
  /** Each remote track, when the answer creates it (it unmutes on its first packet). */
  onTrackReady?: (track: MediaStreamTrack, transceiver: RTCRtpTransceiver) => void;
}

const ONE_HOUR_MS = 3600_000;
/** How long ICE may stay `disconnected` before it is restarted (it often recovers alone). */
const DISCONNECTED_GRACE_MS = 2000;
/** How long one ICE restart may take to connect before the next (or giving up). */
const RESTART_TIMEOUT_MS = 8000;
const MAX_RESTARTS = 2;

function randomId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => b.toString(36).padStart(2, "0")).join("").slice(0, 20);
}

/** Resolves when ICE gathering completes (the offer then carries every host candidate). */
function gathered(pc: RTCPeerConnection, timeoutMs = 3000): Promise<void> {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => pc.iceGatheringState === "complete" && done();
    pc.addEventListener("icegatheringstatechange", check);
    setTimeout(done, timeoutMs);
  });
}

/** One end of the ICE path media takes. */
export interface PathEnd {
  /** host, srflx, prflx or relay. */
  type: string;
  /** udp or tcp (for a relay: how the client reaches the TURN server, in `relayProtocol`). */
  protocol: string;
  address: string;
  port: number;
  relayProtocol?: string;
}

/** The selected ICE candidate pair: how media travels right now (null before it connects). */
export async function selectedPath(pc: RTCPeerConnection): Promise<{ local: PathEnd; remote: PathEnd } | null> {
  const stats = await pc.getStats();
  let pairId: string | undefined;
  stats.forEach((r) => {
    if (r.type === "transport" && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId;
  });
  const pair = pairId ? stats.get(pairId) : undefined;
  if (!pair) return null;
  const end = (id: string): PathEnd => {
    const c = stats.get(id);
    return { type: c?.candidateType, protocol: c?.protocol, address: c?.address, port: c?.port, relayProtocol: c?.relayProtocol };
  };
  return { local: end(pair.localCandidateId), remote: end(pair.remoteCandidateId) };
}

export class RoomSession {
  readonly pc: RTCPeerConnection;
  readonly sessionId: string;
  state: string = "new";
  error: SessionError | null = null;
  slots: Record<string, SlotInfo | null> = {};
  wants = { audio: 0, video: 0 };
  revision = 0;
  answeredRevision = 0;
  /** performance.now() when the first offer was written and when its answer arrived. */
  offerWrittenAt = 0;
  answeredAt = 0;
  /** ICE restarts since the connection last worked; `restarting` while one is under way. */
  iceRestarts = 0;
  restarting = false;
  private restartWanted = false;
  private iceTimer: ReturnType<typeof setTimeout> | undefined;
  private pending = false;
  private unsubscribe: Unsubscribe | null = null;
  private readonly ref;

  private constructor(private readonly opts: JoinOptions) {
    this.sessionId = opts.sessionId ?? randomId();
    this.ref = doc(opts.db, "rooms", opts.roomId, "sessions", this.sessionId);
    // The server answers as ICE-lite with UDP and TCP candidates of its own; TURN (when the
    // deployment has it) is for networks that reach neither.
    this.pc = new RTCPeerConnection({ iceServers: opts.iceServers ?? [], bundlePolicy: "max-bundle" });
    this.pc.addEventListener("iceconnectionstatechange", () => this.onIceState());
  }

  /** Network changes (Wi-Fi to LTE, a sleeping laptop): restart ICE in the same session
   * first, so that nobody sees this participant leave; join again only if that fails. */
  private onIceState(): void {
    const state = this.pc.iceConnectionState;
    console.info(`firesfu: ICE ${state}`);
    if (state === "checking" || state === "new") return; // a restart under way: its timer runs
    clearTimeout(this.iceTimer);
    if (state === "connected" || state === "completed") {
      this.iceRestarts = 0;
      if (this.restarting) {
        this.restarting = false;
        this.opts.onChange?.(this);
      }
    } else if (state === "disconnected") {
      this.iceTimer = setTimeout(() => void this.restartIce(), DISCONNECTED_GRACE_MS);
    } else if (state === "failed") {
      void this.restartIce();
    }
  }

  private iceConnected(): boolean {
    return this.pc.iceConnectionState === "connected" || this.pc.iceConnectionState === "completed";
  }

  /** Re-offers with new ICE credentials (`iceRestart`); after MAX_RESTARTS in vain, `onLost`. */
  async restartIce(): Promise<void> {
    if (this.pc.signalingState === "closed" || this.ended) return;
    if (this.iceRestarts > 0 && this.iceConnected()) {
      // The last restart worked (a browser keeps `connected` through a restart whose old path
      // still works, so no state change told us).
      this.iceRestarts = 0;
      this.restarting = false;
      this.opts.onChange?.(this);
      return;
    }
    if (this.iceRestarts >= MAX_RESTARTS) {
      this.restarting = false;
      this.opts.onLost?.(this);
      return;
    }
    if (this.pending) {
      this.restartWanted = true; // after the answer in flight
      return;
    }
    this.iceRestarts += 1;
    this.restarting = true;
    this.opts.onChange?.(this);
    clearTimeout(this.iceTimer);
    this.iceTimer = setTimeout(() => void this.restartIce(), RESTART_TIMEOUT_MS);
    await this.offer(true);
  }

  static async join(opts: JoinOptions): Promise<RoomSession> {
    const s = new RoomSession(opts);
    s.pc.addEventListener("track", (e) => opts.onTrackReady?.(e.track, e.transceiver));
    for (const track of opts.stream?.getTracks() ?? []) {
      s.pc.addTransceiver(track, { direction: "sendonly", streams: [opts.stream!] });
    }
    // A send slot without a track yet (camera off at join): `replaceTrack` fills it later
    // without a re-offer.
    for (const kind of opts.sendSlots ?? []) {
      if (!s.sender(kind)) s.pc.addTransceiver(kind, { direction: "sendonly" });
    }
    for (let i = 0; i < (opts.initialSlots?.audio ?? 0); i++) s.pc.addTransceiver("audio", { direction: "recvonly" });
    for (let i = 0; i < (opts.initialSlots?.video ?? 0); i++) s.pc.addTransceiver("video", { direction: "recvonly" });
    try {
      await s.offer();
    } catch (e) {
      s.pc.close(); // a failed join must not leave a peer connection behind
      throw e;
    }
    s.listen();
    return s;
  }

  private listen(): void {
    this.unsubscribe?.();
    this.unsubscribe = onSnapshot(
      this.ref,
      (snap) => {
        if (snap.exists()) this.enqueue(snap.data());
      },
      (err) => {
        this.error = { code: "listen-failed", message: err.message, revision: null };
        this.opts.onChange?.(this);
      },
    );
  }

  /** Receive slots this connection has, by kind. */
  slotCount(kind: "audio" | "video"): number {
    return this.pc
      .getTransceivers()
      .filter((t) => t.direction === "recvonly" && t.receiver.track.kind === kind).length;
  }

  /** The sender of this session's published track of `kind`, if it publishes one. */
  sender(kind: "audio" | "video"): RTCRtpSender | null {
    const t = this.pc.getTransceivers().find((t) => t.direction === "sendonly" && t.receiver.track.kind === kind);
    return t?.sender ?? null;
  }

  /** The participant whose media arrives on a transceiver, from `slots`. */
  participantOf(transceiver: RTCRtpTransceiver): SlotInfo | null {
    return transceiver.mid ? this.slots[transceiver.mid] ?? null : null;
  }

  private async offer(iceRestart = false): Promise<void> {
    this.pending = true;
    this.revision += 1;
    const offer = await this.pc.createOffer({ iceRestart });
    await this.pc.setLocalDescription(offer);
    await gathered(this.pc);
    const sdp = this.pc.localDescription!.sdp;
    if (this.revision === 1) {
      this.offerWrittenAt = performance.now();
      await setDoc(this.ref, {
        v: 1,
        uid: this.opts.uid,
        displayName: this.opts.displayName,
        token: this.opts.token,
        ...(this.opts.traceparent ? { traceparent: this.opts.traceparent } : {}),
        ...(this.opts.media ? { media: this.opts.media } : {}),
        offer: { sdp, revision: 1 },
        state: "offered",
        createdAt: serverTimestamp(),
        expiresAt: Timestamp.fromMillis(Date.now() + ONE_HOUR_MS),
      });
    } else {
      await updateDoc(this.ref, { offer: { sdp, revision: this.revision }, state: "offered" });
    }
    this.watchPending(this.revision);
  }

  /**
   * While an offer waits for its answer, listen afresh now and then: a listener can stay on a
   * stale version of the document (seen with the Firestore emulator, whose listeners reset and
   * replay their targets), and nothing else would ever deliver the answer.
   */
  private watchPending(revision: number, delayMs = 1500): void {
    setTimeout(() => {
      if (!this.pending || this.revision !== revision || this.pc.signalingState === "closed") return;
      console.warn(`firesfu: no answer to offer ${revision} yet; listening again`);
      this.listen();
      this.watchPending(revision, Math.min(delayMs * 2, 10_000));
    }, delayMs);
  }

  /** Snapshots are handled one at a time, in order (handling awaits the peer connection). */
  private queue: Promise<void> = Promise.resolve();
  private enqueue(d: DocumentData): void {
    this.queue = this.queue.then(() => this.onDocument(d)).catch((e) => {
      console.error("firesfu: handling the session document failed", e);
    });
  }

  private async onDocument(d: DocumentData): Promise<void> {
    this.state = d.state;
    this.error = d.error ?? null;
    this.slots = d.slots ?? {};
    this.wants = d.wants ?? { audio: 0, video: 0 };
    const answer = d.answer;
    if (this.pending && answer?.revision === this.revision && (d.state === "answered" || d.state === "connected")) {
      this.pending = false;
      this.answeredRevision = answer.revision;
      if (answer.revision === 1) this.answeredAt = performance.now();
      await this.pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
      if (this.restartWanted) {
        this.restartWanted = false;
        void this.restartIce();
      }
    } else if (this.pending && this.error?.revision === this.revision && d.state !== "offered" && d.state !== "answering") {
      // The server refused this offer: roll it back (a live session keeps its old one).
      this.pending = false;
      if (this.pc.signalingState === "have-local-offer") {
        await this.pc.setLocalDescription({ type: "rollback" });
      }
    }
    if (!this.pending && (d.state === "answered" || d.state === "connected")) {
      const needAudio = this.wants.audio - this.slotCount("audio");
      const needVideo = this.wants.video - this.slotCount("video");
      if (needAudio > 0 || needVideo > 0) {
        for (let i = 0; i < needAudio; i++) this.pc.addTransceiver("audio", { direction: "recvonly" });
        for (let i = 0; i < needVideo; i++) this.pc.addTransceiver("video", { direction: "recvonly" });
        await this.offer();
      }
    }
    this.opts.onChange?.(this);
  }

  /** Tells the room which of this session's tracks are on (mute, camera off). */
  async setMedia(media: { audio: boolean; video: boolean }): Promise<void> {
    this.opts.media = media;
    await updateDoc(this.ref, { media });
  }

  async leave(): Promise<void> {
    clearTimeout(this.iceTimer);
    this.unsubscribe?.();
    this.pc.close();
    if (this.state !== "closed" && this.state !== "failed") await updateDoc(this.ref, { state: "closed" });
  }

  /** True once the server ended the session (then join again with a new session). */
  get ended(): boolean {
    return this.state === "failed" || this.state === "closed";
  }
}
