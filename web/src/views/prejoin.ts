// Before entering a room: the camera preview and whether the microphone and camera start on.
import type { AppContext } from "../app";
import type { Room } from "../api";
import { h, mount } from "../dom";
import { CAMERA_SIZE, devicePicker, openTrack, saveChoice, savedChoice, type DeviceChoice } from "./devices";

export interface JoinChoice {
  room: Room;
  /** The devices this tab opened (either track may be missing: no device or no permission). */
  stream: MediaStream;
  audio: boolean;
  video: boolean;
  /** The devices chosen (remembered in this browser). */
  devices: DeviceChoice;
}

/** Opens microphone and camera together (the chosen ones if present), else whichever works. */
export async function openDevices(audio: boolean, video: boolean, choice: DeviceChoice = {}): Promise<MediaStream> {
  const mic = choice.audioinput ? { deviceId: choice.audioinput } : true;
  const cam = { ...CAMERA_SIZE, ...(choice.videoinput ? { deviceId: choice.videoinput } : {}) };
  const attempts: MediaStreamConstraints[] = [
    { audio: audio && mic, video: video && cam },
    { audio: audio && mic },
    { video: video && cam },
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
  const devices = savedChoice();
  const stream = await openDevices(true, true, devices);
  let audio = stream.getAudioTracks().length > 0;
  let video = stream.getVideoTracks().length > 0;
  const preview = h("video.preview", { autoplay: true, muted: true, playsInline: true, srcObject: stream });
  const placeholder = h("div.placeholder", {}, h("span.avatar", {}, (ctx.api.user?.username ?? "?").slice(0, 1).toUpperCase()));
  const mic = h("button.toggle", { type: "button", name: "mic", onclick: () => { audio = !audio; draw(); } });
  const cam = h("button.toggle", { type: "button", name: "camera", onclick: () => { video = !video; draw(); } });
  const picker = devicePicker(() => devices, async (kind, id) => {
    devices[kind] = id;
    saveChoice(devices);
    if (kind === "audiooutput") return;
    const media = kind === "audioinput" ? "audio" : "video";
    const track = await openTrack(media, id);
    if (!track) return;
    for (const old of media === "audio" ? stream.getAudioTracks() : stream.getVideoTracks()) {
      old.stop();
      stream.removeTrack(old);
    }
    stream.addTrack(track);
    preview.srcObject = stream;
    draw();
  });
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
        h("div.row", {}, mic, cam), missing, picker.element,
        h("button.primary", { type: "button", name: "join", onclick: () => { entered = true; enter({ room, stream, audio, video, devices }); } }, "Join now"))));
  draw();
  return () => {
    picker.close();
    if (!entered) stream.getTracks().forEach((t) => t.stop());
  };
}
