// The participant grid: one tile per person (and one per screen share), with their video (or
// a placeholder with their name when the camera is off), a muted icon, a raised hand, their
// RTT and a connection-quality grade, and a pin button. One tile may be on the stage (large,
// the others in a filmstrip). It also works out how tall each remote video is shown (0 when
// it cannot be seen), so that the server sends the simulcast layer that fits.
import { h } from "../dom";
import { grade, type Grade, type Measured } from "../quality";
import { icon } from "./icons";

export interface TileState {
  key: string;
  name: string;
  self: boolean;
  video: MediaStreamTrack | null;
  audio: MediaStreamTrack | null;
  audioOn: boolean;
  videoOn: boolean;
  quality: Measured | null;
  /** The receive slot (`mid`) the remote video arrives on, if any. */
  videoMid?: string | null;
  /** The room's dominant speaker (`data-speaking="true"`, outlined). */
  speaking?: boolean;
  /** A screen share (shown whole, never cropped or mirrored). */
  screen?: boolean;
  /** The participant shares a screen (a badge on their own tile). */
  presenting?: boolean;
  hand?: boolean;
  pinned?: boolean;
  /** An IP camera of the room (labelled as one; no microphone to be muted). */
  camera?: boolean;
  /** What a camera's placeholder says while it shows no video (its state). */
  status?: string | null;
}

/** The heights asked for, in device pixels: a tile's height is rounded up to one of them. */
const HEIGHT_STEPS = [180, 360, 720, 1080];

/** The height to ask for a video shown `cssHeight` CSS pixels tall (0: not shown). */
export function wantedHeight(cssHeight: number, dpr = window.devicePixelRatio || 1): number {
  const px = cssHeight * dpr;
  if (!(px > 0)) return 0;
  return HEIGHT_STEPS.find((step) => step >= px) ?? HEIGHT_STEPS[HEIGHT_STEPS.length - 1];
}

interface Tile {
  root: HTMLElement;
  name: HTMLElement;
  hand: HTMLElement;
  presenting: HTMLElement;
  pin: HTMLButtonElement;
  video: HTMLVideoElement;
  audio: HTMLAudioElement;
  placeholder: HTMLElement;
  status: HTMLElement;
  muted: HTMLElement;
  rtt: HTMLElement;
  grade: HTMLElement;
  videoTrack: MediaStreamTrack | null;
  audioTrack: MediaStreamTrack | null;
  videoMid: string | null;
  /** From the observers: the tile's height in CSS pixels, and whether it is in view. */
  cssHeight: number | null;
  inView: boolean | null;
}

const GRADE_TEXT: Record<Grade, string> = { good: "Good", fair: "Fair", poor: "Poor", unknown: "Measuring…" };

function makeTile(state: TileState, onPin: (key: string) => void): Tile {
  const video = h("video", { autoplay: true, muted: true, playsInline: true });
  const audio = h("audio", { autoplay: true });
  const status = h("span.camera-status", {});
  const placeholder = h("div.placeholder", {},
    h("span.avatar", { "aria-hidden": "true" }, state.camera ? icon("ipCamera") : state.name.slice(0, 1).toUpperCase()), status);
  const muted = h("span.muted-icon", { role: "img", "aria-label": "Microphone off", title: "Microphone off", hidden: true }, icon("micOff"));
  const hand = h("span.hand", { role: "img", "aria-label": "Hand raised", title: "Hand raised", hidden: true }, icon("hand"));
  const presenting = h("span.badge", { hidden: true }, "Presenting");
  const label = state.screen ? state.name : state.self ? `${state.name} (you)` : state.camera ? `${state.name} (camera)` : state.name;
  const name = h("span.name", { title: label }, state.camera ? state.name : label);
  const rtt = h("span.rtt", {});
  const gradeEl = h("span.quality", {});
  const pin = h("button.pin.icon-only", { type: "button", name: "pin", onclick: () => onPin(state.key) }, icon("pin"), h("span.visually-hidden", {}, ""));
  const kind = state.camera ? h("span.badge.camera-badge", {}, "Camera") : null;
  const root = h("article.tile", { dataset: { participant: state.name, key: state.key, self: String(state.self), screen: String(state.screen === true), camera: String(state.camera === true) }, "aria-label": label },
    video, audio, placeholder, pin,
    h("div.caption", {}, muted, hand, kind, name, presenting, state.screen ? null : h("span.stats", {}, rtt, gradeEl)));
  return {
    root, name, hand, presenting, pin, video, audio, placeholder, status, muted, rtt, grade: gradeEl, videoTrack: null, audioTrack: null,
    videoMid: null, cssHeight: null, inView: null,
  };
}

export class TileGrid {
  readonly element = h("section.grid", { "aria-label": "Participants", dataset: { layout: "grid" } });
  private readonly stage = h("div.stage-slot", {});
  private readonly strip = h("div.strip", { "aria-label": "Filmstrip" });
  private tiles = new Map<string, Tile>();
  private sink = "";
  /** `onPin(key)`: the user pressed a tile's pin button. */
  onPin: (key: string) => void = () => {};
  private readonly byRoot = new Map<Element, Tile>();
  private readonly resized = new ResizeObserver((entries) => {
    for (const e of entries) {
      const tile = this.byRoot.get(e.target);
      if (tile) tile.cssHeight = e.borderBoxSize?.[0]?.blockSize ?? e.contentRect.height;
    }
    this.viewChanged();
  });
  private readonly seen = new IntersectionObserver((entries) => {
    for (const e of entries) {
      const tile = this.byRoot.get(e.target);
      if (tile) tile.inView = e.isIntersecting;
    }
    this.viewChanged();
  });
  private readonly onVisibility = () => this.viewChanged();
  private closed = false;
  private lastWants = "";

  /** `onView`: how large the remote videos are shown changed (see `receiveWants`). */
  constructor(private readonly onView: () => void = () => {}) {
    document.addEventListener("visibilitychange", this.onVisibility);
    this.watchPixelRatio();
  }

  /** A window moved to a screen of another pixel density. */
  private watchPixelRatio(): void {
    if (this.closed) return;
    matchMedia(`(resolution: ${window.devicePixelRatio || 1}dppx)`).addEventListener("change", () => {
      this.watchPixelRatio();
      this.viewChanged();
    }, { once: true });
  }

  /**
   * The height each remote video should arrive at, by receive slot: 0 for tiles out of view
   * (scrolled away, not displayed, or the tab hidden), else the tile's height in device pixels
   * rounded up to 180, 360, 720 or 1080. Tiles not laid out yet are left out (no limit).
   */
  receiveWants(): Map<string, number> {
    const wants = new Map<string, number>();
    const hidden = document.visibilityState === "hidden";
    for (const tile of this.tiles.values()) {
      if (!tile.videoMid) continue;
      if (hidden || tile.inView === false) wants.set(tile.videoMid, 0);
      else if (tile.inView && tile.cssHeight !== null) wants.set(tile.videoMid, wantedHeight(tile.cssHeight));
    }
    return wants;
  }

  private viewChanged(): void {
    if (this.closed) return;
    const key = JSON.stringify([...this.receiveWants()]);
    if (key === this.lastWants) return;
    this.lastWants = key;
    this.onView();
  }

  close(): void {
    this.closed = true;
    this.resized.disconnect();
    this.seen.disconnect();
    document.removeEventListener("visibilitychange", this.onVisibility);
  }

  /** Plays every participant's audio on this output device (`setSinkId`; "" the default). */
  setSink(deviceId: string): Promise<unknown> {
    this.sink = deviceId;
    return Promise.all([...this.tiles.values()].map((t) => this.applySink(t)));
  }

  private async applySink(tile: Tile): Promise<void> {
    const el = tile.audio as HTMLAudioElement & { setSinkId?: (id: string) => Promise<void>; sinkId?: string };
    if (el.setSinkId && el.sinkId !== this.sink) await el.setSinkId(this.sink).catch((e) => console.warn("firesfu: cannot switch the speaker", e));
  }

  /** Shows `states` in order; `stageKey` (if one of them) large, the others in a filmstrip. */
  update(states: TileState[], stageKey: string | null = null): void {
    const order: HTMLElement[] = [];
    let stageTile: HTMLElement | null = null;
    for (const s of states) {
      let tile = this.tiles.get(s.key);
      if (!tile) {
        this.tiles.set(s.key, (tile = makeTile(s, (key) => this.onPin(key))));
        if (this.sink) void this.applySink(tile);
        if (!s.self) {
          this.byRoot.set(tile.root, tile);
          this.resized.observe(tile.root);
          this.seen.observe(tile.root);
        }
      }
      tile.videoMid = s.self ? null : s.videoMid ?? null;
      if (tile.videoTrack !== s.video) {
        tile.videoTrack = s.video;
        tile.video.srcObject = s.video ? new MediaStream([s.video]) : null;
      }
      if (!s.self && tile.audioTrack !== s.audio) {
        tile.audioTrack = s.audio;
        tile.audio.srcObject = s.audio ? new MediaStream([s.audio]) : null;
      }
      const showVideo = s.videoOn && s.video !== null;
      tile.video.hidden = !showVideo;
      tile.placeholder.hidden = showVideo;
      tile.root.dataset.video = String(showVideo);
      tile.root.dataset.audio = String(s.audioOn);
      tile.muted.hidden = s.audioOn || s.camera === true;
      tile.status.textContent = showVideo ? "" : s.status ?? "";
      if (s.camera) tile.root.dataset.status = showVideo ? "live" : s.status ? "waiting" : "starting";
      if (s.speaking) tile.root.dataset.speaking = "true";
      else delete tile.root.dataset.speaking;
      tile.hand.hidden = !s.hand;
      tile.presenting.hidden = !s.presenting;
      const label = s.camera ? `${tile.name.textContent} (camera)` : tile.name.textContent ?? s.name;
      tile.pin.setAttribute("aria-pressed", String(s.pinned === true));
      tile.pin.title = s.pinned ? `Unpin ${label}` : `Pin ${label}`;
      tile.pin.lastElementChild!.textContent = tile.pin.title;
      tile.root.dataset.pinned = String(s.pinned === true);
      tile.root.setAttribute("aria-label", [label, s.hand && "hand raised", s.presenting && "presenting", !s.screen && !s.camera && !s.audioOn && "muted", s.camera && !showVideo && s.status].filter(Boolean).join(", "));
      if (!s.screen) this.showQuality(tile, s.quality);
      if (s.key === stageKey) stageTile = tile.root;
      else order.push(tile.root);
    }
    for (const [key, tile] of this.tiles) {
      if (!states.some((s) => s.key === key)) {
        tile.video.srcObject = null;
        tile.audio.srcObject = null;
        this.resized.unobserve(tile.root);
        this.seen.unobserve(tile.root);
        this.byRoot.delete(tile.root);
        this.tiles.delete(key);
      }
    }
    if (stageTile) {
      this.stage.replaceChildren(stageTile);
      this.strip.replaceChildren(...order);
      if (this.element.dataset.layout !== "stage") this.element.replaceChildren(this.stage, this.strip);
      this.element.dataset.layout = "stage";
    } else {
      this.element.replaceChildren(...order);
      this.element.dataset.layout = "grid";
    }
    for (const [key, tile] of this.tiles) {
      if (key === stageKey) tile.root.dataset.stage = "true";
      else delete tile.root.dataset.stage;
    }
    this.element.dataset.count = String(states.length);
    this.viewChanged();
  }

  private showQuality(tile: Tile, q: Measured | null): void {
    const g = q ? grade(q) : "unknown";
    tile.rtt.textContent = q?.rttMs == null ? "RTT –" : q.rttMs < 1 ? "RTT <1 ms" : `RTT ${Math.round(q.rttMs)} ms`;
    tile.rtt.dataset.rttMs = q?.rttMs != null ? q.rttMs.toFixed(1) : "";
    tile.grade.textContent = GRADE_TEXT[g];
    tile.grade.dataset.grade = g;
    const loss = q?.loss != null ? `${(q.loss * 100).toFixed(1)} % loss` : "loss unknown";
    const jitter = q?.jitterMs != null ? `${Math.round(q.jitterMs)} ms jitter` : "jitter unknown";
    tile.grade.title = `${loss}, ${jitter}`;
  }
}
