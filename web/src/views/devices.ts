// Microphone, camera and speaker: what the browser lists (kept current on hot-plug), which one
// the user chose (remembered in this browser), and opening a track on the chosen one — or on
// any other when it is gone.
import { h } from "../dom";

export type DeviceKind = "audioinput" | "videoinput" | "audiooutput";
export type DeviceChoice = Partial<Record<DeviceKind, string>>;

const STORAGE = "firesfu.devices";
export const CAMERA_SIZE = { width: 640, height: 480 };
const LABELS: Record<DeviceKind, string> = { audioinput: "Microphone", videoinput: "Camera", audiooutput: "Speaker" };

export function savedChoice(): DeviceChoice {
  try {
    return JSON.parse(localStorage.getItem(STORAGE) ?? "{}") as DeviceChoice;
  } catch {
    return {};
  }
}

export function saveChoice(choice: DeviceChoice): void {
  localStorage.setItem(STORAGE, JSON.stringify(choice));
}

/** The browser can route audio to a chosen output (`setSinkId`). */
export const canPickSpeaker = () => "setSinkId" in HTMLMediaElement.prototype;

export async function devicesOf(kind: DeviceKind): Promise<MediaDeviceInfo[]> {
  const all = await navigator.mediaDevices.enumerateDevices().catch(() => []);
  return all.filter((d) => d.kind === kind && d.deviceId);
}

/**
 * Opens a microphone or camera track: the chosen device if it is still there, else the
 * browser's default. Null when none can be opened.
 */
export async function openTrack(kind: "audio" | "video", deviceId?: string): Promise<MediaStreamTrack | null> {
  const base = kind === "video" ? CAMERA_SIZE : {};
  const tries: MediaTrackConstraints[] = deviceId ? [{ ...base, deviceId: { exact: deviceId } }, base] : [base];
  for (const c of tries) {
    const stream = await navigator.mediaDevices.getUserMedia(kind === "audio" ? { audio: c } : { video: c }).catch(() => null);
    const track = stream?.getTracks()[0];
    if (track) return track;
  }
  return null;
}

/** The device a live track uses. */
export const deviceOf = (track: MediaStreamTrack | undefined | null) => track?.getSettings().deviceId;

/**
 * Three labelled selects (microphone, camera, speaker where the browser can pick one) that
 * follow hot-plugging; `onPick` runs when the user picks a device.
 */
export function devicePicker(current: () => DeviceChoice, onPick: (kind: DeviceKind, deviceId: string) => void): { element: HTMLElement; close: () => void } {
  const kinds: DeviceKind[] = canPickSpeaker() ? ["audioinput", "videoinput", "audiooutput"] : ["audioinput", "videoinput"];
  const selects = new Map(kinds.map((k) => [k, h("select", { name: k, onchange: (e: Event) => onPick(k, (e.target as HTMLSelectElement).value) })]));
  const fill = async () => {
    for (const [kind, select] of selects) {
      const list = await devicesOf(kind);
      const chosen = current()[kind];
      select.replaceChildren(...(list.length ? list : [null]).map((d, i) => d
        ? h("option", { value: d.deviceId, selected: d.deviceId === chosen }, d.label || `${LABELS[kind]} ${i + 1}`)
        : h("option", { value: "" }, `No ${LABELS[kind].toLowerCase()} found`)));
      select.disabled = list.length === 0;
    }
  };
  const onChange = () => void fill();
  navigator.mediaDevices.addEventListener("devicechange", onChange);
  void fill();
  const element = h("div.devices", {}, ...[...selects].map(([kind, select]) => h("label", {}, LABELS[kind], select)));
  return { element, close: () => navigator.mediaDevices.removeEventListener("devicechange", onChange) };
}
