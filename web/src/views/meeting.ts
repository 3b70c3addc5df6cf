// In the room: joins through the sidecar (join token) and Firestore (the session document),
// shows everyone's tiles (grid, presenter or speaker layout; any tile can be pinned), the chat
// and people panels and the controls, shares the screen, and re-joins by itself when the
// server ends the session for a reason a new session can fix (the room moved, the server
// drains).
import { collection, doc, onSnapshot, type Firestore, type Timestamp } from "firebase/firestore";
import type { AppContext } from "../app";
import { ApiError } from "../api";
import { h, mount } from "../dom";
import { firestoreFor } from "../firebase";
import { RoomSession, selectedPath, type SessionError, type TrackSource } from "../firesfu";
import { ownLink, received, type Measured } from "../quality";
import { watch } from "../watch";
import { Announcer } from "./announcer";
import { camerasDialog, cameraSession, cameraStatus, type CameraDoc } from "./cameras";
import { chatPanel } from "./chat";
import { control, shortcuts, showShortcuts, type ControlSpec } from "./controls";
import { deviceOf, devicePicker } from "./devices";
import { openDialog } from "./dialog";
import { afterShares, LAYOUTS, stageOf, type Layout } from "./layout";
import { LocalMedia } from "./localmedia";
import { MutedHint } from "./mutedhint";
import { PeoplePanel } from "./people";
import type { JoinChoice } from "./prejoin";
import { TileGrid, type TileState } from "./tiles";

/** Session end codes after which joining again (a new session) is the cure. */
const REJOIN_CODES = new Set(["connect-failed", "peer-timeout", "session-lost", "server-shutdown", "room-moved", "instance-gone"]);
const STATS_EVERY_MS = 2000;
const LAYOUT_NAMES: Record<Layout, string> = { grid: "Grid", presenter: "Presenter", speaker: "Speaker" };

interface Participant {
  id: string;
  displayName: string;
  uid?: string;
  tracks?: { mid: string; kind: string; source?: TrackSource }[];
  /** `camera: true`: one of the room's IP cameras (session id `camera-{cameraId}`). */
  media?: { audio?: boolean; video?: boolean; camera?: boolean };
  quality?: { rttMs: number | null; loss: number | null };
  handRaisedAt?: Timestamp | null;
  /** A viewer session (a WHEP player): whom it watches. It gets no tile. */
  watching?: string;
  /** The broadcast instance that wrote the entry. */
  instance?: string;
}

declare global {
  interface Window {
    /** For tests and the curious: what this tab receives, per participant. */
    firesfuInbound?: () => Promise<{ participant: string; kind: string; source: string; codec: string | null; packets: number; framesDecoded: number | null; frameWidth: number | null; frameHeight: number | null }[]>;
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
  /** The roster as shown (see `refilter`), and as the listener last delivered it. */
  private roster = new Map<string, Participant>();
  private rosterAll = new Map<string, Participant>();
  private qualities = new Map<string, Measured>();
  private stopRoster: (() => void) | null = null;
  /** The dominant speaker's session id, as the server last wrote it (null: nobody yet). */
  private speaker: string | null = null;
  /** The last other person the server named the speaker (the speaker layout's fallback). */
  private lastSpeaker: string | null = null;
  private stopSpeaker: (() => void) | null = null;
  /** The room's IP cameras' public documents, by camera id. */
  private cameras = new Map<string, CameraDoc>();
  private stopCameras: (() => void) | null = null;
  private stopped = false;
  private reconnecting = false;
  private hand = false;
  private layout: Layout = "grid";
  private layoutBefore: Layout = "grid";
  private pinned: string | null = null;
  private shares = new Set<string>();
  /** Who was in the room at the last roster snapshot (joins and leaves are announced). */
  private present: Map<string, string> | null = null;
  private unread = 0;
  /** Others with a raised hand at the last roster snapshot (new ones are announced). */
  private hands = new Set<string>();
  /** The stage tile's receive slot (written `pinned`). */
  private stageMid: string | null = null;
  private alertTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly media: LocalMedia;
  private readonly tiles = new TileGrid(() => this.syncReceive());
  private readonly chat = chatPanel((from) => this.onChatMessage(from));
  private readonly people = new PeoplePanel();
  private readonly announcer = new Announcer();
  private readonly banner = h("p.banner", { role: "status", hidden: true });
  private readonly alert = h("p.alert", { role: "alert", hidden: true });
  private readonly mutedHint = h("p.muted-hint", { role: "status", hidden: true }, "You are muted. Press Alt+A to unmute.");
  private readonly levels = new MutedHint(this.mutedHint);
  private readonly unreadBadge = h("span.unread", { hidden: true });
  private readonly layoutSelect = h("select", { name: "layout", "aria-label": "Layout", onchange: (e: Event) => this.setLayout((e.target as HTMLSelectElement).value as Layout) },
    ...LAYOUTS.map((l) => h("option", { value: l }, LAYOUT_NAMES[l])));
  /** Device toggles run one at a time (a double click must not open a camera twice). */
  private toggles: Promise<void> = Promise.resolve();
  private readonly specs: ControlSpec[];
  private readonly controls;
  private readonly root: HTMLElement;
  private readonly stopShortcuts: () => void;
  private readonly statsTimer: ReturnType<typeof setInterval>;

  constructor(root: HTMLElement, private readonly ctx: AppContext, private readonly choice: JoinChoice) {
    this.root = root;
    this.media = new LocalMedia(choice.stream, choice.audio, choice.video, choice.devices, () => this.session, (m, e) => this.tell(m, e));
    this.media.changed = () => void this.publishMedia();
    this.specs = [
      { name: "mic", label: "Mute", icon: "mic", key: "KeyA", run: () => this.serially(() => this.media.toggleMic().then(() => this.publishMedia())) },
      { name: "camera", label: "Stop camera", icon: "camera", key: "KeyV", run: () => this.serially(() => this.media.toggleCamera().then(() => this.publishMedia())) },
      { name: "share", label: "Present", icon: "screen", key: "KeyS", run: () => this.serially(() => this.toggleShare()) },
      { name: "hand", label: "Raise hand", icon: "hand", key: "KeyH", run: () => void this.toggleHand() },
      { name: "chat-toggle", label: "Chat", icon: "chat", key: "KeyC", run: () => this.togglePanel("chat") },
      { name: "people", label: "People", icon: "people", key: "KeyP", run: () => this.togglePanel("people") },
      { name: "devices", label: "Devices", icon: "settings", run: () => this.openDevices() },
      { name: "invite", label: "Invite", icon: "link", run: () => void this.copyInvite() },
      ...(this.owner() ? [{ name: "cameras", label: "Cameras", icon: "ipCamera" as const, run: () => camerasDialog(this.ctx.api, this.choice.room) }] : []),
      { name: "shortcuts", label: "Shortcuts", icon: "keyboard", key: "Slash", run: () => showShortcuts(this.specs) },
      { name: "leave", label: "Leave", icon: "leave", danger: true, run: () => this.leave() },
    ];
    this.controls = Object.fromEntries(this.specs.map((s) => [s.name, control(s)]));
    this.controls["chat-toggle"].button.append(this.unreadBadge);
    if (!navigator.mediaDevices || !("getDisplayMedia" in navigator.mediaDevices)) {
      this.controls.share.button.disabled = true;
      this.controls.share.button.title = "This browser cannot share a screen";
    }
    this.tiles.onPin = (key) => this.pin(key);
    const wide = matchMedia("(min-width: 900px)").matches;
    mount(root, h("div.meeting", { dataset: { panel: wide ? "chat" : "" } },
      h("header.topbar", {}, h("h1", {}, choice.room.name), this.banner, h("label.layout-pick", {}, h("span.visually-hidden", {}, "Layout"), this.layoutSelect)),
      h("main.body", {}, this.tiles.element, h("div.side", {}, this.chat.element, this.people.element)),
      this.alert, this.mutedHint, this.announcer.element,
      h("footer.controls", { "aria-label": "Meeting controls" }, ...this.specs.map((s) => this.controls[s.name].button))));
    this.drawControls();
    this.stopShortcuts = shortcuts(this.specs, () => !document.querySelector("dialog[open]"));
    this.statsTimer = setInterval(() => void this.measure(), STATS_EVERY_MS);
    this.installHooks();
  }

  private owner(): boolean {
    return this.choice.room.owner.id === this.ctx.api.user?.id;
  }

  private installHooks(): void {
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
      layout: this.layout, pinned: this.pinned, sharing: this.session?.sharing ?? false,
      devices: { audio: deviceOf(this.media.track("audio")), video: deviceOf(this.media.track("video")) },
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
    this.listen(db);
    this.chat.attach(db, this.choice.room.id, { uid: join.firebase.uid, displayName: join.displayName });
    // One receive slot per person already there saves a re-offer (the server asks for more).
    const others = Math.max(this.choice.room.participants, [...this.roster.keys()].filter((id) => !this.mySessions.has(id)).length);
    const session = await RoomSession.join({
      db, roomId: this.choice.room.id, uid: join.firebase.uid, displayName: join.displayName, token: join.token,
      traceparent: join.traceparent ?? undefined, stream: this.media.stream, sendSlots: ["audio", "video"],
      media: { audio: this.media.audio, video: this.media.video }, hand: this.hand,
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
      const track = this.media.track(kind);
      const sender = session.sender(kind);
      if (sender && sender.track !== track) await sender.replaceTrack(track);
    }
    if (this.stopped) return void (await session.leave());
    // A share survives a re-join (another instance, a new session).
    if (this.media.screen) await this.publishShare(this.media.screen);
  }

  private listen(db: Firestore): void {
    if (this.db === db) return;
    this.db = db;
    this.stopRoster?.();
    this.stopRoster = watch((onError) => onSnapshot(collection(db, "rooms", this.choice.room.id, "participants"), (snap) => {
      this.rosterAll = new Map(snap.docs.map((d) => [d.id, { id: d.id, ...(d.data() as Omit<Participant, "id">) }]));
      this.refilter();
      this.announceChanges();
      this.draw();
    }, onError), "roster");
    this.stopCameras?.();
    this.stopCameras = watch((onError) => onSnapshot(collection(db, "rooms", this.choice.room.id, "cameras"), (snap) => {
      this.cameras = new Map(snap.docs.map((d) => [d.id, { id: d.id, ...(d.data() as Omit<CameraDoc, "id">) }]));
      this.draw();
    }, onError), "cameras");
    // Like the roster, readable once the server has made this user a member.
    this.stopSpeaker?.();
    this.stopSpeaker = watch((onError) => onSnapshot(doc(db, "rooms", this.choice.room.id, "live", "speaker"), (snap) => {
      const session: unknown = snap.get("session");
      const speaker = typeof session === "string" && session ? session : null;
      if (speaker === this.speaker) return;
      this.speaker = speaker;
      if (speaker && !this.mySessions.has(speaker)) this.lastSpeaker = speaker;
      this.draw();
    }, onError), "speaker");
  }

  /**
   * A room lives on one instance: entries another instance wrote are left over from before
   * the room moved (its sessions are over; they go within a moment, but a listener that
   * resumed after an error may keep showing them — seen with the emulator). Shown: the entries
   * of the instance serving this session, and any while that is not known yet.
   */
  private refilter(): void {
    const here = this.session?.instance ?? null;
    this.roster = new Map([...this.rosterAll].filter(([id, p]) => !here || !p.instance || p.instance === here || this.mySessions.has(id)));
  }

  /** Joins, leaves and raised hands, for screen readers (not the first snapshot). */
  private announceChanges(): void {
    const now = new Map([...this.roster.values()].filter((p) => !this.mySessions.has(p.id)).map((p) => [p.id, p.displayName]));
    const hands = new Set([...this.roster.values()].filter((p) => p.handRaisedAt && !this.mySessions.has(p.id)).map((p) => p.id));
    if (this.present) {
      const said: string[] = [];
      const camera = (id: string) => this.roster.get(id)?.media?.camera === true || id.startsWith("camera-");
      for (const [id, name] of now) if (!this.present.has(id)) said.push(camera(id) ? `Camera ${name} is on.` : `${name} joined.`);
      for (const [id, name] of this.present) if (!now.has(id)) said.push(camera(id) ? `Camera ${name} is off.` : `${name} left.`);
      for (const id of hands) if (!this.hands.has(id)) said.push(`${now.get(id)} raised their hand.`);
      if (said.length) this.announcer.say(said.join(" "));
    }
    this.present = now;
    this.hands = hands;
  }

  private onSession(s: RoomSession): void {
    if (s !== this.session) return;
    this.refilter();
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

  /** A message for the user (a refused share, a device that went away), shown for a while. */
  private tell(message: string, error = false): void {
    this.alert.textContent = message;
    this.alert.dataset.kind = error ? "error" : "info";
    this.alert.hidden = false;
    clearTimeout(this.alertTimer);
    this.alertTimer = setTimeout(() => (this.alert.hidden = true), 8000);
  }

  private serially(toggle: () => Promise<void>): void {
    this.toggles = this.toggles.then(toggle).catch((e) => console.warn("firesfu: toggle failed", e));
  }

  private async publishMedia(): Promise<void> {
    this.drawControls();
    this.draw();
    await this.session?.setMedia({ audio: this.media.audio, video: this.media.video }).catch((e) => console.warn("firesfu: cannot publish media state", e));
  }

  private drawControls(): void {
    const c = this.controls;
    const { audio, video } = this.media;
    c.mic.set(audio ? "Mute" : "Unmute", audio ? "mic" : "micOff", !audio);
    c.camera.set(video ? "Stop camera" : "Start camera", video ? "camera" : "cameraOff", !video);
    c.share.set(this.media.screen ? "Stop presenting" : "Present", "screen", this.media.screen !== null);
    c.hand.set(this.hand ? "Lower hand" : "Raise hand", "hand", this.hand);
    const panel = this.root.querySelector<HTMLElement>(".meeting")?.dataset.panel;
    c["chat-toggle"].button.setAttribute("aria-expanded", String(panel === "chat"));
    c.people.button.setAttribute("aria-expanded", String(panel === "people"));
    this.unreadBadge.hidden = this.unread === 0;
    this.unreadBadge.textContent = String(this.unread);
    c["chat-toggle"].button.setAttribute("aria-label", this.unread ? `Chat, ${this.unread} unread` : "Chat");
    this.layoutSelect.value = this.layout;
    this.levels.watch(this.media.track("audio"), !audio);
  }

  private async toggleShare(): Promise<void> {
    if (this.media.screen) return this.stopShare();
    const asked = performance.now();
    const stream = await this.media.capture();
    if (!stream) return;
    console.info(`firesfu: screen captured in ${Math.round(performance.now() - asked)} ms`);
    this.media.screen = stream;
    // The browser's own "Stop sharing" ends the track.
    stream.getVideoTracks()[0]?.addEventListener("ended", () => {
      if (this.media.screen === stream) this.serially(() => this.stopShare());
    });
    this.drawControls();
    if (this.session) await this.publishShare(stream);
    this.draw();
  }

  private async publishShare(stream: MediaStream): Promise<void> {
    try {
      await this.session?.share(stream);
    } catch (e) {
      const err = e as SessionError;
      this.media.stopScreen();
      this.drawControls();
      this.draw();
      this.tell(err.code === "presenter-busy" ? `You cannot present now: ${err.message}.` : `The share failed: ${err.message ?? String(e)}`, true);
    }
  }

  private async stopShare(): Promise<void> {
    this.media.stopScreen();
    this.drawControls();
    this.draw();
    await this.session?.unshare();
  }

  private async toggleHand(): Promise<void> {
    this.hand = !this.hand;
    this.drawControls();
    this.draw();
    await this.session?.setHand(this.hand).catch((e) => console.warn("firesfu: cannot raise the hand", e));
  }

  private togglePanel(which: "chat" | "people"): void {
    const meeting = this.root.querySelector<HTMLElement>(".meeting");
    if (!meeting) return;
    const open = meeting.dataset.panel === which ? "" : which;
    meeting.dataset.panel = open;
    if (open === "chat") {
      this.unread = 0;
      this.root.querySelector<HTMLInputElement>("input[name=chat]")?.focus();
    }
    this.drawControls();
  }

  private onChatMessage(from: string): void {
    if (this.root.querySelector<HTMLElement>(".meeting")?.dataset.panel === "chat") return;
    this.unread += 1;
    this.announcer.say(`New message from ${from}.`);
    this.drawControls();
  }

  private openDevices(): void {
    const picker = devicePicker(() => this.media.choice, (kind, id) => {
      if (kind === "audiooutput") void this.tiles.setSink(id);
      this.serially(() => this.media.switchTo(kind, id).then(() => this.publishMedia()));
    });
    const dialog = openDialog("Devices", [picker.element], []);
    dialog.addEventListener("close", picker.close);
  }

  private async copyInvite(): Promise<void> {
    const link = `${location.origin}${location.pathname}#/rooms/${encodeURIComponent(this.choice.room.id)}`;
    try {
      await navigator.clipboard.writeText(link);
      this.tell("Invite link copied. People with an account can join with it.");
    } catch {
      const field = h("input", { readOnly: true, value: link, "aria-label": "Invite link" });
      openDialog("Invite people", [h("p", {}, "Copy this link:"), field], []);
      field.select();
    }
  }

  private leave(): void {
    if (!this.media.screen) return this.ctx.go("/rooms");
    openDialog("Leave while presenting?", [h("p", {}, "You are presenting. Leaving stops your screen share for everyone.")],
      [{ label: "Leave", danger: true, run: async () => { this.ctx.go("/rooms"); return true; } }]);
  }

  private pin(key: string): void {
    this.pinned = this.pinned === key ? null : key;
    this.draw();
  }

  private setLayout(layout: Layout): void {
    this.layout = layout;
    this.pinned = null;
    this.draw();
  }

  /** The remote tracks of one participant, from the session's slot map and their roster entry. */
  private tracksOf(id: string) {
    const out = {
      audio: null as MediaStreamTrack | null, video: null as MediaStreamTrack | null, videoMid: null as string | null,
      screen: null as MediaStreamTrack | null, screenMid: null as string | null, screenAudio: null as MediaStreamTrack | null,
      mids: new Set<string>(),
    };
    const s = this.session;
    if (!s) return out;
    const sources = new Map((this.roster.get(id)?.tracks ?? []).map((t) => [t.mid, t.source]));
    for (const t of s.pc.getTransceivers()) {
      const slot = t.mid ? s.slots[t.mid] : null;
      if (!slot || slot.participant !== id || t.direction !== "recvonly") continue;
      out.mids.add(t.mid!);
      const source = sources.get(slot.sourceMid);
      if (source === "screen") [out.screen, out.screenMid] = [t.receiver.track, t.mid];
      else if (source === "screen-audio") out.screenAudio = t.receiver.track;
      else if (slot.kind === "video") [out.video, out.videoMid] = [t.receiver.track, t.mid];
      else out.audio = t.receiver.track;
    }
    return out;
  }

  private draw(): void {
    const name = this.ctx.api.user?.username ?? "you";
    const speaker = this.speaker;
    const { audio, video, screen } = this.media;
    const self: TileState = {
      key: "self", name, self: true, video: this.media.track("video"), audio: null,
      audioOn: audio, videoOn: video, quality: this.qualities.get("self") ?? null,
      speaking: speaker !== null && this.mySessions.has(speaker), hand: this.hand, presenting: screen !== null,
    };
    const states: TileState[] = [self];
    const screens: TileState[] = [];
    const others = [...this.roster.values()]
      .filter((p) => !this.mySessions.has(p.id) && !p.watching)
      .sort((a, b) => a.displayName.localeCompare(b.displayName) || a.id.localeCompare(b.id));
    const owner = this.owner();
    for (const p of others) {
      const tracks = this.tracksOf(p.id);
      const presenting = (p.tracks ?? []).some((t) => t.source === "screen");
      const camera = p.media?.camera === true ? this.cameras.get(p.id.replace(/^camera-/, "")) : undefined;
      states.push({
        key: p.id, name: p.displayName, self: false, video: tracks.video, audio: tracks.audio, videoMid: tracks.videoMid,
        audioOn: p.media?.audio !== false, videoOn: p.media?.video !== false, quality: this.qualities.get(p.id) ?? null,
        speaking: p.id === speaker, hand: Boolean(p.handRaisedAt), presenting,
        ...(p.media?.camera === true ? { camera: true, status: camera ? cameraStatus(camera, owner, false) : null } : {}),
      });
      if (presenting) {
        screens.push({
          key: `${p.id}:screen`, name: `${p.displayName}'s screen`, self: false, screen: true, video: tracks.screen,
          audio: tracks.screenAudio, videoMid: tracks.screenMid, audioOn: true, videoOn: true, quality: null,
        });
      }
    }
    // Cameras that are not pulled right now (connecting, retrying, failed) still have a tile,
    // which says so; a switched-off one has none.
    for (const c of this.cameras.values()) {
      const status = cameraStatus(c, owner, false);
      if (this.roster.has(cameraSession(c.id)) || status === null) continue;
      states.push({
        key: cameraSession(c.id), name: c.name, self: false, video: null, audio: null, audioOn: true, videoOn: false,
        quality: null, camera: true, status,
      });
    }
    if (screen) {
      screens.push({ key: "self:screen", name: "Your screen", self: true, screen: true, video: screen.getVideoTracks()[0] ?? null, audio: null, audioOn: true, videoOn: true, quality: null });
    }
    // The speaker's tile comes first; everyone else keeps their place (yours first, then by
    // name), so the grid only moves when the speaker changes. Screen shares lead.
    const at = states.findIndex((t) => t.speaking);
    if (at > 0) states.unshift(...states.splice(at, 1));
    const all = [...screens, ...states];
    this.followShares(screens.map((s) => s.key));
    if (this.pinned && !all.some((t) => t.key === this.pinned)) this.pinned = null;
    for (const t of all) t.pinned = t.key === this.pinned;
    const stage = stageOf({
      layout: this.layout, pinned: this.pinned, screens: screens.map((s) => s.key), keys: all.map((t) => t.key), self: "self",
      speaker: speaker && !this.mySessions.has(speaker) ? speaker : this.lastSpeaker,
    });
    this.tiles.update(all, stage);
    this.stageMid = all.find((t) => t.key === stage)?.videoMid ?? null;
    this.people.update([self, ...states.filter((t) => !t.self && !t.camera)].map((t) => ({
      key: t.key, name: t.name, self: t.self, audioOn: t.audioOn, videoOn: t.videoOn, presenting: t.presenting === true,
      handSince: t.self ? (this.hand ? 0 : null) : this.roster.get(t.key)?.handRaisedAt?.toMillis?.() ?? null, quality: t.quality,
    })));
    this.layoutSelect.value = this.layout;
    this.syncReceive();
  }

  /** A new share switches to the presenter layout; the last one ending switches back. */
  private followShares(keys: string[]): void {
    const next = new Set(keys);
    const fresh = keys.some((k) => !this.shares.has(k));
    const after = afterShares(this.layout, this.layoutBefore, this.shares.size > 0, next.size > 0, fresh);
    this.layout = after.layout;
    this.layoutBefore = after.before;
    this.shares = next;
  }

  /**
   * Tells the server how large each remote video is shown (`receive`), so that it sends the
   * simulcast layer that fits, and nothing for tiles out of view; the stage's video is pinned
   * (it matters most when the downlink is short). Slots no tile shows are not limited. The
   * session coalesces the writes.
   */
  private syncReceive(): void {
    const s = this.session;
    if (!s || s.ended) return;
    const wants = this.tiles.receiveWants();
    for (const mid of Object.keys(s.receive)) {
      if (!wants.has(mid)) s.setReceive(mid, null);
    }
    for (const [mid, maxHeight] of wants) s.setReceive(mid, { maxHeight, pinned: mid === this.stageMid });
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
    const sourceOf = (mid: string | undefined) => {
      const slot = mid ? s.slots[mid] : null;
      const track = slot ? this.roster.get(slot.participant)?.tracks?.find((t) => t.mid === slot.sourceMid) : null;
      return track?.source ?? (slot?.kind === "audio" ? "microphone" : "camera");
    };
    const codecs = new Map(stats.filter((r) => r.type === "codec").map((r) => [r.id as string, r.mimeType as string]));
    return stats.filter((r) => r.type === "inbound-rtp").map((r) => ({
      participant: (r.mid && s.slots[r.mid]?.displayName) || "?",
      kind: r.kind as string,
      source: sourceOf(r.mid),
      codec: codecs.get(r.codecId) ?? null,
      packets: Number(r.packetsReceived ?? 0),
      framesDecoded: r.framesDecoded ?? null,
      frameWidth: r.frameWidth ?? null,
      frameHeight: r.frameHeight ?? null,
    }));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.statsTimer);
    clearTimeout(this.alertTimer);
    this.stopShortcuts();
    this.stopRoster?.();
    this.stopSpeaker?.();
    this.stopCameras?.();
    this.tiles.close();
    this.chat.detach();
    this.levels.close();
    delete window.firesfuInbound;
    delete window.firesfuDebug;
    delete window.firesfuPath;
    delete window.firesfuRestartIce;
    delete window.firesfuSpeaker;
    this.media.close();
    await this.session?.leave().catch(() => {});
  }
}

export function meetingView(root: HTMLElement, ctx: AppContext, choice: JoinChoice): () => void {
  const meeting = new Meeting(root, ctx, choice);
  void meeting.start();
  return () => void meeting.stop();
}
