// The browser side of the firesfu signalling protocol v1 (docs/signalling.md): join a room by
// writing an offer into a Firestore session document, apply the server's answer, re-offer when
// the server wants more receive slots, leave.

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
  onChange?: (session: RoomSession) => void;
  /** Each remote track, when the answer creates it (it unmutes on its first packet). */
  onTrackReady?: (track: MediaStreamTrack, transceiver: RTCRtpTransceiver) => void;
}

const ONE_HOUR_MS = 3600_000;

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
  private pending = false;
  private unsubscribe: Unsubscribe | null = null;
  private readonly ref;

  private constructor(private readonly opts: JoinOptions) {
    this.sessionId = opts.sessionId ?? randomId();
    this.ref = doc(opts.db, "rooms", opts.roomId, "sessions", this.sessionId);
    // No ICE servers: the server has a reachable address and answers as ICE-lite.
    this.pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: "max-bundle" });
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

  private async offer(): Promise<void> {
    this.pending = true;
    this.revision += 1;
    const offer = await this.pc.createOffer();
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
    this.unsubscribe?.();
    this.pc.close();
    if (this.state !== "closed" && this.state !== "failed") await updateDoc(this.ref, { state: "closed" });
  }

  /** True once the server ended the session (then join again with a new session). */
  get ended(): boolean {
    return this.state === "failed" || this.state === "closed";
  }
}
