// "You are muted": while the microphone is off, its level is still measured (on a clone of the
// track, which stays enabled and is never sent); speaking for a moment shows the hint.
const CHECK_MS = 100;
/** RMS of the samples (−1…1) above which the user is taken to be speaking (about −36 dBFS). */
const SPEAKING_RMS = 0.016;
const NEEDED = 4; // of the last 6 checks
const SHOW_MS = 4000;

export class MutedHint {
  private ctx: AudioContext | null = null;
  private source: MediaStreamAudioSourceNode | null = null;
  private clone: MediaStreamTrack | null = null;
  private readonly analyser: AnalyserNode | null = null;
  private readonly samples = new Float32Array(1024);
  private history: boolean[] = [];
  private timer: ReturnType<typeof setInterval> | undefined;
  private hideTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly element: HTMLElement) {
    try {
      this.ctx = new AudioContext();
      this.analyser = this.ctx.createAnalyser();
      this.analyser.fftSize = 1024;
    } catch (e) {
      console.info("firesfu: no audio level measurement for the muted hint", e);
    }
  }

  /** Measures `track` while `muted`; pass null to stop. */
  watch(track: MediaStreamTrack | null, muted: boolean): void {
    const same = this.clone && track && this.clone.label === track.label && this.clone.readyState === "live";
    if (!muted || !track) {
      this.stop();
      return;
    }
    if (!this.ctx || !this.analyser || (same && this.timer)) return;
    this.stop();
    this.clone = track.clone();
    this.clone.enabled = true;
    this.source = this.ctx.createMediaStreamSource(new MediaStream([this.clone]));
    this.source.connect(this.analyser);
    void this.ctx.resume().catch(() => {});
    this.timer = setInterval(() => this.check(), CHECK_MS);
  }

  private check(): void {
    this.analyser!.getFloatTimeDomainData(this.samples);
    let sum = 0;
    for (const v of this.samples) sum += v * v;
    this.history.push(Math.sqrt(sum / this.samples.length) > SPEAKING_RMS);
    if (this.history.length > 6) this.history.shift();
    if (this.history.filter(Boolean).length >= NEEDED) this.show();
  }

  private show(): void {
    if (this.element.hidden) this.element.hidden = false;
    clearTimeout(this.hideTimer);
    this.hideTimer = setTimeout(() => (this.element.hidden = true), SHOW_MS);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.history = [];
    this.source?.disconnect();
    this.source = null;
    this.clone?.stop();
    this.clone = null;
    clearTimeout(this.hideTimer);
    this.element.hidden = true;
  }

  close(): void {
    this.stop();
    void this.ctx?.close().catch(() => {});
  }
}
