// The participant grid: one tile per person, with their video (or a placeholder with their
// name when the camera is off), a muted icon, their RTT and a connection-quality grade.
import { h } from "../dom";
import { grade, type Grade, type Measured } from "../quality";

export interface TileState {
  key: string;
  name: string;
  self: boolean;
  video: MediaStreamTrack | null;
  audio: MediaStreamTrack | null;
  audioOn: boolean;
  videoOn: boolean;
  quality: Measured | null;
}

interface Tile {
  root: HTMLElement;
  video: HTMLVideoElement;
  audio: HTMLAudioElement;
  placeholder: HTMLElement;
  muted: HTMLElement;
  rtt: HTMLElement;
  grade: HTMLElement;
  videoTrack: MediaStreamTrack | null;
  audioTrack: MediaStreamTrack | null;
}

const GRADE_TEXT: Record<Grade, string> = { good: "Good", fair: "Fair", poor: "Poor", unknown: "Measuring…" };

function makeTile(state: TileState): Tile {
  const video = h("video", { autoplay: true, muted: true, playsInline: true });
  const audio = h("audio", { autoplay: true });
  const placeholder = h("div.placeholder", {}, h("span.avatar", {}, state.name.slice(0, 1).toUpperCase()));
  const muted = h("span.muted-icon", { role: "img", "aria-label": "Microphone off", title: "Microphone off", hidden: true }, "🔇");
  const rtt = h("span.rtt", {});
  const gradeEl = h("span.quality", {});
  const root = h("article.tile", { dataset: { participant: state.name, key: state.key, self: String(state.self) } },
    video, audio, placeholder,
    h("div.caption", {}, muted, h("span.name", {}, state.self ? `${state.name} (you)` : state.name), h("span.stats", {}, rtt, gradeEl)));
  return { root, video, audio, placeholder, muted, rtt, grade: gradeEl, videoTrack: null, audioTrack: null };
}

export class TileGrid {
  readonly element = h("section.grid", { "aria-label": "Participants" });
  private tiles = new Map<string, Tile>();

  update(states: TileState[]): void {
    const order: HTMLElement[] = [];
    for (const s of states) {
      let tile = this.tiles.get(s.key);
      if (!tile) this.tiles.set(s.key, (tile = makeTile(s)));
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
      tile.muted.hidden = s.audioOn;
      this.showQuality(tile, s.quality);
      order.push(tile.root);
    }
    for (const [key, tile] of this.tiles) {
      if (!states.some((s) => s.key === key)) {
        tile.video.srcObject = null;
        tile.audio.srcObject = null;
        this.tiles.delete(key);
      }
    }
    this.element.replaceChildren(...order);
    this.element.dataset.count = String(order.length);
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
