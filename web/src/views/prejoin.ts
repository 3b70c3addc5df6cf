// Before entering a room: the camera preview and whether the microphone and camera start on.
import type { AppContext } from "../app";
import type { Room } from "../api";
import { h, mount } from "../dom";

export interface JoinChoice {
  room: Room;
  /** The devices this tab opened (either track may be missing: no device or no permission). */
  stream: MediaStream;
  audio: boolean;
  video: boolean;
}

/** Opens microphone and camera together, else whichever of them works. */
export async function openDevices(audio: boolean, video: boolean): Promise<MediaStream> {
  const attempts: MediaStreamConstraints[] = [
    { audio, video: video && { width: 640, height: 480 } },
    { audio },
    { video: video && { width: 640, height: 480 } },
  ].filter((c) => c.audio || c.video);
  for (const c of attempts) {
    try {
      return await navigator.mediaDevices.getUserMedia(c);
    } catch {
      // Try with fewer devices.
    }
  }
  return new MediaStream();
}

export async function prejoinView(root: HTMLElement, ctx: AppContext, roomId: string, enter: (c: JoinChoice) => void): Promise<() => void> {
  const room = await ctx.api.room(roomId);
  const stream = await openDevices(true, true);
  let audio = stream.getAudioTracks().length > 0;
  let video = stream.getVideoTracks().length > 0;
  const preview = h("video.preview", { autoplay: true, muted: true, playsInline: true, srcObject: stream });
  const placeholder = h("div.placeholder", {}, h("span.avatar", {}, (ctx.api.user?.username ?? "?").slice(0, 1).toUpperCase()));
  const mic = h("button.toggle", { type: "button", name: "mic", onclick: () => { audio = !audio; draw(); } });
  const cam = h("button.toggle", { type: "button", name: "camera", onclick: () => { video = !video; draw(); } });
  const missing = h("p.hint", {});
  const draw = () => {
    const hasAudio = stream.getAudioTracks().length > 0;
    const hasVideo = stream.getVideoTracks().length > 0;
    audio &&= hasAudio;
    video &&= hasVideo;
    stream.getAudioTracks().forEach((t) => (t.enabled = audio));
    stream.getVideoTracks().forEach((t) => (t.enabled = video));
    mic.textContent = audio ? "Microphone on" : "Microphone off";
    cam.textContent = video ? "Camera on" : "Camera off";
    mic.setAttribute("aria-pressed", String(audio));
    cam.setAttribute("aria-pressed", String(video));
    mic.toggleAttribute("disabled", !hasAudio);
    cam.toggleAttribute("disabled", !hasVideo);
    preview.hidden = !video;
    placeholder.hidden = video;
    missing.textContent = [!hasAudio && "No microphone available.", !hasVideo && "No camera available."].filter(Boolean).join(" ");
  };
  let entered = false;
  mount(root,
    h("header.topbar", {}, h("a", { href: "#/rooms" }, "← Rooms"), h("h1", {}, room.name)),
    h("main.page.prejoin", {},
      h("div.stage", {}, preview, placeholder),
      h("div.card", {},
        h("p", {}, "Joining as ", h("strong", {}, ctx.api.user?.username ?? "")),
        h("div.row", {}, mic, cam), missing,
        h("button.primary", { type: "button", name: "join", onclick: () => { entered = true; enter({ room, stream, audio, video }); } }, "Join now"))));
  draw();
  return () => {
    if (!entered) stream.getTracks().forEach((t) => t.stop());
  };
}
