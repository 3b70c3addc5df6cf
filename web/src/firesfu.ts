// The browser side of the firesfu signalling protocol v1 (docs/signalling.md): join a room by
// writing an offer into a Firestore session document, apply the server's answer, re-offer when
// the server wants more receive slots, restart ICE when the network changes, publish the camera
// in simulcast layers (pausing those nobody receives), say how large each received video is
// shown, leave.

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

/** What the client wants on one receive slot (the session document's `receive`). */
export interface ReceivePref {
  /** The largest video height wanted (the server picks the simulcast layer at or below it);
   * `0` pauses the slot's video. An integer 0–4320. */
  maxHeight: number;
  /** This slot matters more than the others when the server shares a limited downlink. */
  pinned?: boolean;
}

/** What a published track carries (the session document's `sources`). */
export type TrackSource = "camera" | "microphone" | "screen" | "screen-audio";

/** A screen share's one encoding: sharp text first (see `share`). */
const SCREEN_MAX_BITRATE = 2_500_000;

/** The camera's simulcast layers, low to high (`rid` q, h, f: quarter, half, full size). */
export const SIMULCAST_ENCODINGS: readonly Readonly<RTCRtpEncodingParameters>[] = [
  { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

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
  /** Publish video in the three layers of SIMULCAST_ENCODINGS (default true; audio never). */
  simulcast?: boolean;
  /**
   * Rewrites each offer before it is applied and sent (e.g. SSRC-signalled simulcast by SDP
   * munging, for clients that cannot use rids). Leave unset: the default offer is what the
   * server expects.
   */
  transformOffer?: (sdp: string) => string;
  /** Which published tracks are on; mirrored into the roster for the other participants. */
  media?: { audio: boolean; video: boolean };
  /** A raised hand (the roster's `handRaisedAt`). */
  hand?: boolean;
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
/** `receive` is written at most this often (the latest map wins). */
const RECEIVE_WRITE_EVERY_MS = 300;
/** The rules' bound on `receive` entries. */
const MAX_RECEIVE_ENTRIES = 128;
const MAX_HEIGHT = 4320;

/** `receive` as a comparable string (key order does not matter). */
function receiveKey(receive: Record<string, ReceivePref>): string {
  return JSON.stringify(Object.keys(receive).sort().map((mid) => [mid, receive[mid].maxHeight, receive[mid].pinned === true]));
}

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
  /** The broadcast instance serving this session (the session document's `instance`). */
  instance: string | null = null;
  wants = { audio: 0, video: 0 };
  revision = 0;
  answeredRevision = 0;
  /** performance.now() when the first offer was written and when its answer arrived. */
  offerWrittenAt = 0;
  answeredAt = 0;
  /** ICE restarts since the connection last worked; `restarting` while one is under way. */
  iceRestarts = 0;
  restarting = false;
  /** What this client asked to receive per receive slot (`receive`, see setReceive). */
  receive: Record<string, ReceivePref> = {};
  /** The server's `layers`: per publish mid, the simulcast layers someone receives. */
  layers: Record<string, Record<string, boolean>> = {};
  private receiveWritten: string | null = receiveKey({});
  private receiveTimer: ReturnType<typeof setTimeout> | undefined;
  private receiveWrittenAt = -Infinity;
  private restartWanted = false;
  private iceTimer: ReturnType<typeof setTimeout> | undefined;
  private pending = false;
  /** The screen share's transceivers (kept `inactive` between shares, reused by the next). */
  private screen: { video?: RTCRtpTransceiver; audio?: RTCRtpTransceiver } = {};
  /** Settles the current offer: its answer, or the server's refusal. */
  private settle: { revision: number; resolve: () => void; reject: (e: SessionError) => void } | null = null;
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
      s.pc.addTransceiver(track, { direction: "sendonly", streams: [opts.stream!], ...s.encodingsFor(track.kind) });
    }
    // A send slot without a track yet (camera off at join): `replaceTrack` fills it later
    // without a re-offer (in simulcast too: the layers are negotiated now).
    for (const kind of opts.sendSlots ?? []) {
      if (!s.sender(kind)) s.pc.addTransceiver(kind, { direction: "sendonly", ...s.encodingsFor(kind) });
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

  /** The `sendEncodings` of a published track of `kind`: simulcast layers for video. */
  private encodingsFor(kind: string): { sendEncodings?: RTCRtpEncodingParameters[] } {
    if (kind !== "video" || this.opts.simulcast === false) return {};
    return { sendEncodings: SIMULCAST_ENCODINGS.map((e) => ({ ...e })) };
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
    const screen = [this.screen.video, this.screen.audio];
    const t = this.pc.getTransceivers().find((t) => t.direction === "sendonly" && t.receiver.track.kind === kind && !screen.includes(t));
    return t?.sender ?? null;
  }

  /** True while this session publishes a screen share. */
  get sharing(): boolean {
    return this.screen.video?.direction === "sendonly";
  }

  /** `sources` for the next offer: the screen share's mids (the rest are camera/microphone). */
  private sources(): Record<string, TrackSource> {
    const out: Record<string, TrackSource> = {};
    const { video, audio } = this.screen;
    if (video?.mid && video.direction === "sendonly") out[video.mid] = "screen";
    if (audio?.mid && audio.direction === "sendonly") out[audio.mid] = "screen-audio";
    return out;
  }

  /**
   * Publishes a screen share (`getDisplayMedia`'s stream: its video, and its audio if the
   * browser captured some) in this session with a re-offer. Resolves once the server answers;
   * rejects with the server's error (e.g. `presenter-busy`: someone else presents), the share
   * then withdrawn. Text stays sharp: `contentHint = "detail"`, one full-size encoding, and
   * resolution kept over frame rate when bandwidth is short.
   */
  async share(stream: MediaStream): Promise<void> {
    const video = stream.getVideoTracks()[0];
    if (!video) throw new Error("the shared stream has no video");
    const audio = stream.getAudioTracks()[0] ?? null;
    video.contentHint = "detail";
    if (audio) audio.contentHint = "music";
    this.screen.video = await this.publishOn(this.screen.video, video, stream, [{ maxBitrate: SCREEN_MAX_BITRATE }]);
    try {
      const params = this.screen.video.sender.getParameters();
      params.degradationPreference = "maintain-resolution";
      await this.screen.video.sender.setParameters(params);
    } catch (e) {
      console.info("firesfu: the browser keeps its own degradation preference for the share", e);
    }
    if (audio) this.screen.audio = await this.publishOn(this.screen.audio, audio, stream);
    const offered = performance.now();
    try {
      await this.offerAndWait();
      console.info(`firesfu: share answered in ${Math.round(performance.now() - offered)} ms`);
    } catch (e) {
      await this.withdrawShare();
      throw e;
    }
  }

  /** Stops publishing the screen share (a re-offer; the transceivers wait for the next). */
  async unshare(): Promise<void> {
    if (!this.sharing) return;
    await this.withdrawShare();
    if (!this.ended && this.pc.signalingState !== "closed") await this.offerAndWait().catch((e) => console.warn("firesfu: stopping the share", e));
  }

  private async withdrawShare(): Promise<void> {
    for (const t of [this.screen.video, this.screen.audio]) {
      if (!t || t.direction === "inactive") continue;
      t.direction = "inactive";
      await t.sender.replaceTrack(null);
    }
  }

  private async publishOn(t: RTCRtpTransceiver | undefined, track: MediaStreamTrack, stream: MediaStream, sendEncodings?: RTCRtpEncodingParameters[]): Promise<RTCRtpTransceiver> {
    if (!t) return this.pc.addTransceiver(track, { direction: "sendonly", streams: [stream], sendEncodings });
    t.direction = "sendonly";
    await t.sender.replaceTrack(track);
    t.sender.setStreams?.(stream);
    return t;
  }

  /** A re-offer that resolves on its answer and rejects with the server's refusal (after the
   * offer in flight, if any, is settled). */
  private async offerAndWait(): Promise<void> {
    for (let waited = 0; this.pending; waited += 100) {
      if (waited >= 15_000 || this.ended) throw new Error("the previous offer got no answer");
      await new Promise((r) => setTimeout(r, 100));
    }
    const done = new Promise<void>((resolve, reject) => {
      this.settle = { revision: this.revision + 1, resolve, reject };
    });
    void this.offer().catch((e) => this.settle?.reject({ code: "write-failed", message: (e as Error).message, revision: null }));
    return done;
  }

  /** Raises or lowers this participant's hand (the roster's `handRaisedAt`). */
  async setHand(raised: boolean): Promise<void> {
    this.opts.hand = raised;
    await updateDoc(this.ref, { hand: raised });
  }

  /** The participant whose media arrives on a transceiver, from `slots`. */
  participantOf(transceiver: RTCRtpTransceiver): SlotInfo | null {
    return transceiver.mid ? this.slots[transceiver.mid] ?? null : null;
  }

  private async offer(iceRestart = false): Promise<void> {
    this.pending = true;
    this.revision += 1;
    const offer = await this.pc.createOffer({ iceRestart });
    if (this.opts.transformOffer && offer.sdp) offer.sdp = this.opts.transformOffer(offer.sdp);
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
        sources: this.sources(),
        ...(this.opts.hand ? { hand: true } : {}),
        offer: { sdp, revision: 1 },
        state: "offered",
        createdAt: serverTimestamp(),
        expiresAt: Timestamp.fromMillis(Date.now() + ONE_HOUR_MS),
      });
    } else {
      await updateDoc(this.ref, { offer: { sdp, revision: this.revision }, state: "offered", sources: this.sources() });
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
    this.instance = typeof d.instance === "string" ? d.instance : null;
    this.wants = d.wants ?? { audio: 0, video: 0 };
    const answer = d.answer;
    if (this.pending && answer?.revision === this.revision && (d.state === "answered" || d.state === "connected")) {
      this.pending = false;
      this.answeredRevision = answer.revision;
      if (answer.revision === 1) this.answeredAt = performance.now();
      await this.pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
      await this.unlessSimulcastRefused();
      this.settled(answer.revision, null);
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
      this.settled(this.revision, this.error);
    }
    this.layers = d.layers && typeof d.layers === "object" ? d.layers : {};
    await this.applyLayers();
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

  private settled(revision: number, error: SessionError | null): void {
    const s = this.settle;
    if (!s || s.revision !== revision) return;
    this.settle = null;
    if (error) s.reject(error);
    else s.resolve();
  }

  /** The transceivers publishing video in simulcast (several encodings). */
  private simulcastSenders(): RTCRtpTransceiver[] {
    return this.pc.getTransceivers().filter((t) =>
      t.mid !== null && t.direction === "sendonly" && t.receiver.track.kind === "video"
      && t.sender.getParameters().encodings.length > 1);
  }

  /**
   * Encodes only the simulcast layers someone receives: `layers[mid][rid] === false` turns that
   * encoding off, `true` or nothing turns it on (an encoding without a rid, as with
   * SSRC-signalled simulcast, is named by its position: "0" is the lowest). Failures are logged, never thrown (this runs
   * in the snapshot handler, after the answer, one snapshot at a time).
   */
  private async applyLayers(): Promise<void> {
    for (const t of this.simulcastSenders()) {
      try {
        const wanted = this.layers[t.mid!];
        // getParameters and setParameters in one go (the parameters' transaction is per task).
        const params = t.sender.getParameters();
        let changed = false;
        for (const [i, e] of params.encodings.entries()) {
          const name = e.rid || String(i);
          const active = !(wanted && typeof wanted === "object" && wanted[name] === false);
          if ((e.active ?? true) !== active) {
            e.active = active;
            changed = true;
          }
        }
        if (changed) {
          await t.sender.setParameters(params);
          console.info(`firesfu: layers of ${t.mid}: ${params.encodings.map((e, i) => `${e.rid || i}=${e.active ? "on" : "off"}`).join(" ")}`);
        }
      } catch (e) {
        console.warn(`firesfu: cannot switch the simulcast layers of ${t.mid}`, e);
      }
    }
  }

  /**
   * An answer without simulcast leaves only the first (lowest, quarter-size) encoding: send
   * that one at full size instead.
   */
  private async unlessSimulcastRefused(): Promise<void> {
    if (this.opts.simulcast === false) return;
    for (const t of this.pc.getTransceivers()) {
      if (t.direction !== "sendonly" || t.receiver.track.kind !== "video") continue;
      try {
        const params = t.sender.getParameters();
        const [only] = params.encodings;
        if (params.encodings.length !== 1 || (only.scaleResolutionDownBy ?? 1) === 1) continue;
        const top = SIMULCAST_ENCODINGS[SIMULCAST_ENCODINGS.length - 1];
        only.scaleResolutionDownBy = top.scaleResolutionDownBy;
        only.maxBitrate = top.maxBitrate;
        only.active = true;
        await t.sender.setParameters(params);
        console.info(`firesfu: the answer refused simulcast on ${t.mid}: one full-size encoding`);
      } catch (e) {
        console.warn(`firesfu: cannot adjust the encoding of ${t.mid}`, e);
      }
    }
  }

  /**
   * Asks for at most `maxHeight` pixels of video on the receive slot `mid` (0 pauses it: the
   * tile is off screen), or with `null` for no limit. Writes the whole `receive` map, at most
   * once every 300 ms (the latest map wins) and only when it changed. Needs no re-offer.
   */
  setReceive(mid: string, pref: ReceivePref | null): void {
    const next = { ...this.receive };
    if (pref === null) {
      if (!(mid in next)) return;
      delete next[mid];
    } else {
      if (!Number.isFinite(pref.maxHeight)) throw new RangeError(`maxHeight ${pref.maxHeight} is not a number`);
      if (!(mid in next) && Object.keys(next).length >= MAX_RECEIVE_ENTRIES) {
        console.warn(`firesfu: receive holds ${MAX_RECEIVE_ENTRIES} slots already; ${mid} not limited`);
        return;
      }
      const maxHeight = Math.min(MAX_HEIGHT, Math.max(0, Math.round(pref.maxHeight)));
      const had = next[mid];
      if (had && had.maxHeight === maxHeight && (had.pinned === true) === (pref.pinned === true)) return;
      next[mid] = pref.pinned ? { maxHeight, pinned: true } : { maxHeight };
    }
    this.receive = next;
    if (this.receiveTimer !== undefined) return; // the write already due takes the latest map
    const wait = Math.max(0, this.receiveWrittenAt + RECEIVE_WRITE_EVERY_MS - performance.now());
    this.receiveTimer = setTimeout(() => {
      this.receiveTimer = undefined;
      void this.writeReceive();
    }, wait);
  }

  private async writeReceive(): Promise<void> {
    if (this.ended || this.pc.signalingState === "closed") return;
    const key = receiveKey(this.receive);
    if (key === this.receiveWritten) return;
    const receive = this.receive;
    this.receiveWritten = key;
    this.receiveWrittenAt = performance.now();
    try {
      await updateDoc(this.ref, { receive });
    } catch (e) {
      console.warn("firesfu: cannot write what this session receives", e);
      if (this.receiveWritten === key) this.receiveWritten = null; // the next change writes it all
    }
  }

  /** Tells the room which of this session's tracks are on (mute, camera off). */
  async setMedia(media: { audio: boolean; video: boolean }): Promise<void> {
    this.opts.media = media;
    await updateDoc(this.ref, { media });
  }

  async leave(): Promise<void> {
    this.settle?.reject({ code: "closed", message: "the session ended", revision: null });
    this.settle = null;
    clearTimeout(this.iceTimer);
    clearTimeout(this.receiveTimer);
    this.unsubscribe?.();
    this.pc.close();
    if (this.state !== "closed" && this.state !== "failed") await updateDoc(this.ref, { state: "closed" });
  }

  /** True once the server ended the session (then join again with a new session). */
  get ended(): boolean {
    return this.state === "failed" || this.state === "closed";
  }
}
