// In the room: joins through the sidecar (join token) and Firestore (the session document),
// shows everyone's tiles, the chat and the controls, and re-joins by itself when the server
// ends the session for a reason a new session can fix (the room moved, the server drains).
import { collection, doc, onSnapshot, type Firestore } from "firebase/firestore";
import type { AppContext } from "../app";
import { ApiError } from "../api";
import { h, mount } from "../dom";
import { firestoreFor } from "../firebase";
import { RoomSession, selectedPath } from "../firesfu";
import { ownLink, received, type Measured } from "../quality";
import { watch } from "../watch";
import { chatPanel } from "./chat";
import type { JoinChoice } from "./prejoin";
import { TileGrid, type TileState } from "./tiles";

/** Session end codes after which joining again (a new session) is the cure. */
const REJOIN_CODES = new Set(["connect-failed", "peer-timeout", "session-lost", "server-shutdown", "room-moved", "instance-gone"]);
const STATS_EVERY_MS = 2000;

interface Participant {
  id: string;
  displayName: string;
  uid?: string;
  media?: { audio?: boolean; video?: boolean };
  quality?: { rttMs: number | null; loss: number | null };
}

declare global {
  interface Window {
    /** For tests and the curious: what this tab receives, per participant. */
    firesfuInbound?: () => Promise<{ participant: string; kind: string; packets: number; framesDecoded: number | null }[]>;
    /** The session's state, slots and transceivers (for bug reports). */
    firesfuDebug?: () => unknown;
    firesfuPath?: () => Promise<unknown>;
    firesfuRestartIce?: () => Promise<void>;
    firesfuStats?: () => Promise<unknown>;
    /** The session id of the room's dominant speaker (`rooms/{roomId}/live/speaker`), or null. */
    firesfuSpeaker?: () => string | null;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

class Meeting {
  private session: RoomSession | null = null;
  private db: Firestore | null = null;
  private mySessions = new Set<string>();
  private roster = new Map<string, Participant>();
  private qualities = new Map<string, Measured>();
  private stopRoster: (() => void) | null = null;
  /** The dominant speaker's session id, as the server last wrote it (null: nobody yet). */
  private speaker: string | null = null;
  private stopSpeaker: (() => void) | null = null;
  private stopped = false;
  private reconnecting = false;
  private audio: boolean;
  private video: boolean;
  private readonly stream: MediaStream;
  private readonly tiles = new TileGrid(() => this.syncReceive());
  private readonly chat = chatPanel();
  private readonly banner = h("p.banner", { role: "status", hidden: true });
  /** Device toggles run one at a time (a double click must not open a camera twice). */
  private toggles: Promise<void> = Promise.resolve();
  private readonly micButton = h("button.toggle", { type: "button", name: "mic", onclick: () => this.serially(() => this.toggleMic()) });
  private readonly camButton = h("button.toggle", { type: "button", name: "camera", onclick: () => this.serially(() => this.toggleCamera()) });
  private readonly statsTimer: ReturnType<typeof setInterval>;

  constructor(private readonly root: HTMLElement, private readonly ctx: AppContext, private readonly choice: JoinChoice) {
    this.stream = choice.stream;
    this.audio = choice.audio;
    this.video = choice.video;
    // A camera that starts off is not held open (its light stays off); turning it on opens it.
    if (!this.video) this.dropTracks("video");
    this.stream.getAudioTracks().forEach((t) => (t.enabled = this.audio));
    const chatToggle = h("button.chat-toggle", { type: "button", name: "chat-toggle", onclick: () => this.root.querySelector(".meeting")?.classList.toggle("chat-open") }, "Chat");
    mount(root, h("div.meeting", {},
      h("header.topbar", {}, h("h1", {}, choice.room.name), this.banner),
      h("div.body", {}, this.tiles.element, this.chat.element),
      h("footer.controls", {}, this.micButton, this.camButton, chatToggle,
        h("button.danger", { type: "button", name: "leave", onclick: () => ctx.go("/rooms") }, "Leave"))));
    this.drawControls();
    this.statsTimer = setInterval(() => void this.measure(), STATS_EVERY_MS);
    window.firesfuInbound = () => this.inbound();
    window.firesfuStats = async () => {
      const pc = this.session?.pc;
      if (!pc) return null;
      const all = [...(await pc.getStats()).values()].filter((r) => ["inbound-rtp", "codec", "outbound-rtp"].includes(r.type));
      return { stats: all, local: pc.localDescription?.sdp, remote: pc.remoteDescription?.sdp };
    };
    window.firesfuPath = async () => (this.session ? selectedPath(this.session.pc) : null);
    window.firesfuRestartIce = async () => this.session?.restartIce();
    window.firesfuSpeaker = () => this.speaker;
    window.firesfuDebug = () => ({
      sessionId: this.session?.sessionId, iceRestarts: this.session?.iceRestarts,
      state: this.session?.state, revision: this.session?.revision, answered: this.session?.answeredRevision,
      error: this.session?.error, slots: this.session?.slots, roster: [...this.roster.values()],
      receive: this.session?.receive, layers: this.session?.layers, speaker: this.speaker,
      transceivers: this.session?.pc.getTransceivers().map((t) => ({ mid: t.mid, direction: t.direction, current: t.currentDirection, kind: t.receiver.track.kind })),
    });
  }

  async start(): Promise<void> {
    this.showBanner("Joining…");
    await this.rejoinLoop();
  }

  private async connect(): Promise<void> {
    const config = await this.ctx.config();
    const name = this.ctx.api.user?.username ?? "guest";
    const join = await this.ctx.api.join(this.choice.room.id, name, true);
    const db = await firestoreFor(config, join);
    if (this.stopped) return;
    this.listen(db, join.firebase.uid, join.displayName);
    // One receive slot per person already there saves a re-offer (the server asks for more).
    const others = Math.max(this.choice.room.participants, [...this.roster.keys()].filter((id) => !this.mySessions.has(id)).length);
    const session = await RoomSession.join({
      db, roomId: this.choice.room.id, uid: join.firebase.uid, displayName: join.displayName, token: join.token,
      traceparent: join.traceparent ?? undefined, stream: this.stream, sendSlots: ["audio", "video"],
      media: { audio: this.audio, video: this.video },
      initialSlots: { audio: others, video: others },
      iceServers: join.iceServers ?? [],
      onChange: (s) => this.onSession(s),
      onLost: (s) => {
        if (s === this.session) void this.reconnect("The connection was lost.");
      },
      onTrackReady: () => this.draw(),
    });
    this.mySessions.add(session.sessionId);
    this.session = session;
    // The devices may have changed while this session was being made (a toggle during a
    // re-join): send what the stream holds now.
    for (const kind of ["audio", "video"] as const) {
      const track = (kind === "audio" ? this.stream.getAudioTracks() : this.stream.getVideoTracks())[0] ?? null;
      const sender = session.sender(kind);
      if (sender && sender.track !== track) await sender.replaceTrack(track);
    }
    if (this.stopped) await session.leave();
  }

  private listen(db: Firestore, uid: string, displayName: string): void {
    this.chat.attach(db, this.choice.room.id, { uid, displayName });
    if (this.db === db) return;
    this.db = db;
    this.stopRoster?.();
    this.stopRoster = watch((onError) => onSnapshot(collection(db, "rooms", this.choice.room.id, "participants"), (snap) => {
      this.roster = new Map(snap.docs.map((d) => [d.id, { id: d.id, ...(d.data() as Omit<Participant, "id">) }]));
      this.draw();
    }, onError), "roster");
    // Like the roster, readable once the server has made this user a member.
    this.stopSpeaker?.();
    this.stopSpeaker = watch((onError) => onSnapshot(doc(db, "rooms", this.choice.room.id, "live", "speaker"), (snap) => {
      const session: unknown = snap.get("session");
      const speaker = typeof session === "string" && session ? session : null;
      if (speaker === this.speaker) return;
      this.speaker = speaker;
      this.draw();
    }, onError), "speaker");
  }

  private onSession(s: RoomSession): void {
    if (s !== this.session) return;
    if (s.ended) {
      const code = s.error?.code ?? "closed";
      if (REJOIN_CODES.has(code)) void this.reconnect("Reconnecting…");
      else this.fail(`The server ended the session: ${s.error?.message ?? code} (${code}).`);
    } else if (s.restarting) {
      this.showBanner("Network changed: reconnecting…", true);
    } else if (s.state === "connected") {
      this.showBanner(null);
    } else if (s.error && s.error.revision === s.revision) {
      console.warn(`firesfu: re-offer refused: ${s.error.code}`);
    }
    this.draw();
  }

  private async reconnect(why: string): Promise<void> {
    if (this.reconnecting || this.stopped) return;
    this.reconnecting = true;
    this.showBanner(why === "Reconnecting…" ? why : `${why} Reconnecting…`, true);
    const old = this.session;
    this.session = null;
    this.draw();
    await old?.leave().catch(() => {});
    await this.rejoinLoop();
    this.reconnecting = false;
  }

  private async rejoinLoop(): Promise<void> {
    let delay = 500;
    while (!this.stopped) {
      try {
        await this.connect();
        return;
      } catch (e) {
        if (e instanceof ApiError && e.status >= 400 && e.status < 500 && e.status !== 429) {
          this.fail(e.message);
          return;
        }
        this.showBanner(`Reconnecting… (${(e as Error).message})`, true);
        await sleep(delay);
        delay = Math.min(delay * 2, 8000);
      }
    }
  }

  private fail(message: string): void {
    this.showBanner(message, false, true);
  }

  private showBanner(text: string | null, reconnecting = false, error = false): void {
    this.banner.hidden = text === null;
    this.banner.textContent = text ?? "";
    this.banner.dataset.kind = error ? "error" : reconnecting ? "reconnecting" : "info";
  }

  private dropTracks(kind: "audio" | "video"): void {
    for (const t of kind === "audio" ? this.stream.getAudioTracks() : this.stream.getVideoTracks()) {
      t.stop();
      this.stream.removeTrack(t);
    }
  }

  private serially(toggle: () => Promise<void>): void {
    this.toggles = this.toggles.then(toggle).catch((e) => console.warn("firesfu: toggle failed", e));
  }

  private async toggleMic(): Promise<void> {
    if (!this.stream.getAudioTracks().length) {
      const opened = await navigator.mediaDevices.getUserMedia({ audio: true }).catch(() => null);
      const track = opened?.getAudioTracks()[0];
      if (!track) return this.showBanner("No microphone available.", false, true);
      this.stream.addTrack(track);
      await this.session?.sender("audio")?.replaceTrack(track);
      this.audio = true;
    } else {
      this.audio = !this.audio;
    }
    this.stream.getAudioTracks().forEach((t) => (t.enabled = this.audio));
    await this.publishMedia();
  }

  private async toggleCamera(): Promise<void> {
    if (this.video) {
      this.video = false;
      await this.session?.sender("video")?.replaceTrack(null);
      this.dropTracks("video");
    } else {
      const opened = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } }).catch(() => null);
      const track = opened?.getVideoTracks()[0];
      if (!track) return this.showBanner("No camera available.", false, true);
      this.stream.addTrack(track);
      await this.session?.sender("video")?.replaceTrack(track);
      this.video = true;
    }
    await this.publishMedia();
  }

  private async publishMedia(): Promise<void> {
    this.drawControls();
    this.draw();
    await this.session?.setMedia({ audio: this.audio, video: this.video }).catch((e) => console.warn("firesfu: cannot publish media state", e));
  }

  private drawControls(): void {
    this.micButton.textContent = this.audio ? "Mute" : "Unmute";
    this.micButton.setAttribute("aria-pressed", String(!this.audio));
    this.camButton.textContent = this.video ? "Stop camera" : "Start camera";
    this.camButton.setAttribute("aria-pressed", String(!this.video));
  }

  /** The remote tracks of one participant, from the session's slot map. */
  private tracksOf(id: string): { audio: MediaStreamTrack | null; video: MediaStreamTrack | null; videoMid: string | null; mids: Set<string> } {
    const out = { audio: null as MediaStreamTrack | null, video: null as MediaStreamTrack | null, videoMid: null as string | null, mids: new Set<string>() };
    const s = this.session;
    if (!s) return out;
    for (const t of s.pc.getTransceivers()) {
      const slot = t.mid ? s.slots[t.mid] : null;
      if (!slot || slot.participant !== id || t.direction !== "recvonly") continue;
      out.mids.add(t.mid!);
      out[slot.kind] = t.receiver.track;
      if (slot.kind === "video") out.videoMid = t.mid;
    }
    return out;
  }

  private draw(): void {
    const name = this.ctx.api.user?.username ?? "you";
    const speaker = this.speaker;
    const states: TileState[] = [{
      key: "self", name, self: true, video: this.stream.getVideoTracks()[0] ?? null, audio: null,
      audioOn: this.audio, videoOn: this.video, quality: this.qualities.get("self") ?? null,
      speaking: speaker !== null && this.mySessions.has(speaker),
    }];
    const others = [...this.roster.values()]
      .filter((p) => !this.mySessions.has(p.id))
      .sort((a, b) => a.displayName.localeCompare(b.displayName) || a.id.localeCompare(b.id));
    for (const p of others) {
      const tracks = this.tracksOf(p.id);
      states.push({
        key: p.id, name: p.displayName, self: false, video: tracks.video, audio: tracks.audio, videoMid: tracks.videoMid,
        audioOn: p.media?.audio !== false, videoOn: p.media?.video !== false, quality: this.qualities.get(p.id) ?? null,
        speaking: p.id === speaker,
      });
    }
    // The speaker's tile comes first; everyone else keeps their place (yours first, then by
    // name), so the grid only moves when the speaker changes.
    const at = states.findIndex((t) => t.speaking);
    if (at > 0) states.unshift(...states.splice(at, 1));
    this.tiles.update(states);
    this.syncReceive();
  }

  /**
   * Tells the server how large each remote video is shown (`receive`), so that it sends the
   * simulcast layer that fits, and nothing for tiles out of view. Slots no tile shows are not
   * limited. The session coalesces the writes.
   */
  private syncReceive(): void {
    const s = this.session;
    if (!s || s.ended) return;
    const wants = this.tiles.receiveWants();
    for (const mid of Object.keys(s.receive)) {
      if (!wants.has(mid)) s.setReceive(mid, null);
    }
    for (const [mid, maxHeight] of wants) s.setReceive(mid, { maxHeight, pinned: s.receive[mid]?.pinned });
  }

  /** RTT and quality per tile: this browser's getStats plus what the server reports per peer. */
  private async measure(): Promise<void> {
    const s = this.session;
    if (!s || s.pc.connectionState !== "connected") return;
    const stats = [...(await s.pc.getStats()).values()];
    const own = ownLink(stats);
    this.qualities.set("self", own);
    for (const p of this.roster.values()) {
      if (this.mySessions.has(p.id)) continue;
      const got = received(stats, this.tracksOf(p.id).mids);
      const theirs = p.quality ?? { rttMs: null, loss: null };
      // The path is you → server → them: add both legs' round trips when they are known.
      const legs = [own.rttMs, theirs.rttMs].filter((v): v is number => typeof v === "number");
      const loss = [got.loss, theirs.loss].filter((v): v is number => typeof v === "number");
      this.qualities.set(p.id, {
        rttMs: legs.length ? legs.reduce((a, b) => a + b, 0) : null,
        loss: loss.length ? Math.max(...loss) : null,
        jitterMs: got.jitterMs,
      });
    }
    this.draw();
  }

  private async inbound() {
    const s = this.session;
    if (!s) return [];
    const stats = [...(await s.pc.getStats()).values()];
    return stats.filter((r) => r.type === "inbound-rtp").map((r) => ({
      participant: (r.mid && s.slots[r.mid]?.displayName) || "?",
      kind: r.kind as string,
      packets: Number(r.packetsReceived ?? 0),
      framesDecoded: r.framesDecoded ?? null,
    }));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.statsTimer);
    this.stopRoster?.();
    this.stopSpeaker?.();
    this.tiles.close();
    this.chat.detach();
    delete window.firesfuInbound;
    delete window.firesfuDebug;
    delete window.firesfuPath;
    delete window.firesfuRestartIce;
    delete window.firesfuSpeaker;
    this.stream.getTracks().forEach((t) => t.stop());
    await this.session?.leave().catch(() => {});
  }
}

export function meetingView(root: HTMLElement, ctx: AppContext, choice: JoinChoice): () => void {
  const meeting = new Meeting(root, ctx, choice);
  void meeting.start();
  return () => void meeting.stop();
}
