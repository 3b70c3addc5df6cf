// This participant's own media in a meeting: microphone and camera on/off, switching devices
// mid-call (the session and its id stay; the new track replaces the old one on the same
// sender), falling back to another device when one disappears, and the screen share's capture.
import type { RoomSession } from "../firesfu";
import { deviceOf, openTrack, saveChoice, type DeviceChoice, type DeviceKind } from "./devices";

const KIND_NAMES = { audio: "microphone", video: "camera" } as const;

export class LocalMedia {
  audio: boolean;
  video: boolean;
  /** The screen share's capture, while sharing. */
  screen: MediaStream | null = null;

  constructor(
    readonly stream: MediaStream,
    audio: boolean,
    video: boolean,
    readonly choice: DeviceChoice,
    private readonly session: () => RoomSession | null,
    /** Something the user should hear about ("Camera unplugged: using …"). */
    private readonly notify: (message: string, error?: boolean) => void,
  ) {
    this.audio = audio;
    this.video = video;
    // A camera that starts off is not held open (its light stays off); turning it on opens it.
    if (!video) this.drop("video");
    this.track("audio")?.addEventListener("ended", this.onEnded);
    this.track("video")?.addEventListener("ended", this.onEnded);
    this.stream.getAudioTracks().forEach((t) => (t.enabled = audio));
  }

  track(kind: "audio" | "video"): MediaStreamTrack | null {
    return (kind === "audio" ? this.stream.getAudioTracks() : this.stream.getVideoTracks())[0] ?? null;
  }

  private drop(kind: "audio" | "video"): void {
    for (const t of kind === "audio" ? this.stream.getAudioTracks() : this.stream.getVideoTracks()) {
      t.removeEventListener("ended", this.onEnded);
      t.stop();
      this.stream.removeTrack(t);
    }
  }

  /** Puts `track` (or nothing) in the stream and on the session's sender of its kind. */
  private async use(kind: "audio" | "video", track: MediaStreamTrack | null): Promise<void> {
    this.drop(kind);
    if (track) {
      if (kind === "audio") track.enabled = this.audio;
      track.addEventListener("ended", this.onEnded);
      this.stream.addTrack(track);
    }
    await this.session()?.sender(kind)?.replaceTrack(track);
  }

  async toggleMic(): Promise<void> {
    if (!this.track("audio")) {
      const track = await openTrack("audio", this.choice.audioinput);
      if (!track) return this.notify("No microphone available.", true);
      this.audio = true;
      await this.use("audio", track);
    } else {
      this.audio = !this.audio;
      this.stream.getAudioTracks().forEach((t) => (t.enabled = this.audio));
    }
  }

  async toggleCamera(): Promise<void> {
    if (this.video) {
      this.video = false;
      await this.use("video", null);
    } else {
      const track = await openTrack("video", this.choice.videoinput);
      if (!track) return this.notify("No camera available.", true);
      this.video = true;
      await this.use("video", track);
    }
  }

  /** Switches the microphone or camera to `deviceId` (remembered for next time). */
  async switchTo(kind: DeviceKind, deviceId: string): Promise<void> {
    this.choice[kind] = deviceId;
    saveChoice(this.choice);
    if (kind === "audiooutput") return;
    const media = kind === "audioinput" ? "audio" : "video";
    if (media === "video" && !this.video) return; // used when the camera is turned on
    if (deviceOf(this.track(media)) === deviceId) return;
    const track = await openTrack(media, deviceId);
    if (!track) return this.notify(`Cannot open that ${KIND_NAMES[media]}.`, true);
    await this.use(media, track);
  }

  /** A device went away (unplugged, taken by another app): carry on with another one. */
  private readonly onEnded = (e: Event) => {
    const ended = e.target as MediaStreamTrack;
    const media = ended.kind as "audio" | "video";
    if (this.track(media) !== ended) return;
    void (async () => {
      const track = await openTrack(media);
      await this.use(media, track);
      if (track) this.notify(`Your ${KIND_NAMES[media]} was disconnected: now using ${track.label || "another one"}.`);
      else {
        if (media === "video") this.video = false;
        else this.audio = false;
        this.notify(`Your ${KIND_NAMES[media]} was disconnected and no other is available.`, true);
      }
      this.changed?.();
    })();
  };

  /** Set by the meeting: the devices changed by themselves (a fallback). */
  changed: (() => void) | null = null;

  /** Asks the browser for a screen, window or tab to share (null: the user cancelled). */
  async capture(): Promise<MediaStream | null> {
    try {
      return await navigator.mediaDevices.getDisplayMedia({
        video: { width: { ideal: 1920 }, height: { ideal: 1080 }, frameRate: { ideal: 15, max: 30 } },
        audio: true,
      });
    } catch (e) {
      if ((e as Error).name !== "NotAllowedError") this.notify(`Cannot share the screen: ${(e as Error).message}`, true);
      return null;
    }
  }

  stopScreen(): void {
    this.screen?.getTracks().forEach((t) => t.stop());
    this.screen = null;
  }

  close(): void {
    this.stopScreen();
    for (const t of this.stream.getTracks()) {
      t.removeEventListener("ended", this.onEnded);
      t.stop();
    }
  }
}
