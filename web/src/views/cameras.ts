// A room's IP cameras: the owner's dialog to add, rename, switch on/off and remove them
// (through the sidecar, which keeps their URLs and credentials), and what a camera's public
// document (`rooms/{room}/cameras/{id}`, docs/signalling.md "Cameras") says in words for its tile.
import type { Api, Camera, CameraChange } from "../api";
import { h } from "../dom";
import { openDialog } from "./dialog";

/** The browser-readable camera document (no URL, no credentials). */
export interface CameraDoc {
  id: string;
  name: string;
  enabled?: boolean;
  state?: "idle" | "connecting" | "live" | "retrying" | "failed" | "disabled";
  error?: { code: string; message: string } | null;
  width?: number | null;
  height?: number | null;
  audio?: string | null;
}

/** A camera's session id in the roster and in slots. */
export const cameraSession = (id: string) => `camera-${id}`;

/**
 * What a camera's tile says while it shows no video: its state in words, and for the owner
 * (who can fix it) why. Null: nothing to say (live, or switched off: no tile).
 */
export function cameraStatus(doc: CameraDoc, owner: boolean, receiving: boolean): string | null {
  const why = owner && doc.error?.message ? `: ${doc.error.message}` : "";
  switch (doc.state) {
    case "disabled":
      return null;
    case "connecting":
      return "Connecting to the camera…";
    case "retrying":
      return `Reconnecting to the camera${why}`;
    case "failed":
      return `The camera is unavailable${why}`;
    case "live":
      return receiving ? null : "Starting the camera…";
    default:
      return "Starting the camera…";
  }
}

/** Moves `user:password@` out of an RTSP URL typed or pasted in, so the password is masked. */
function takeCredentials(url: HTMLInputElement, username: HTMLInputElement, password: HTMLInputElement): void {
  const match = url.value.trim().match(/^(rtsps?:\/\/)([^@/?#]*)@(.*)$/i);
  if (!match) return;
  const [user, pass = ""] = match[2].split(/:(.*)/s);
  const decode = (s: string) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  };
  username.value = decode(user);
  password.value = decode(pass);
  url.value = match[1] + match[3];
}

/** The owner's cameras dialog for `room`. */
export function camerasDialog(api: Api, room: { id: string; name: string }): void {
  const list = h("ul.cameras", { "aria-label": "Cameras" });
  const listError = h("p.error", { role: "alert" });
  const name = h("input", { name: "camera-name", required: true, maxLength: 80, placeholder: "Front door", autocomplete: "off" });
  const url = h("input", { name: "camera-url", required: true, maxLength: 2048, placeholder: "rtsp://192.168.1.20:554/stream1", autocomplete: "off", spellcheck: "false" });
  const username = h("input", { name: "camera-username", maxLength: 256, autocomplete: "off", spellcheck: "false" });
  const password = h("input", { name: "camera-password", type: "password", maxLength: 256, autocomplete: "new-password" });
  const transport = h("select", { name: "camera-transport" },
    h("option", { value: "tcp", selected: true }, "TCP (works through firewalls)"), h("option", { value: "udp" }, "UDP"));
  url.addEventListener("change", () => takeCredentials(url, username, password));

  const row = (camera: Camera) => {
    const rename = h("input", { name: "rename", value: camera.name, maxLength: 80, "aria-label": `Name of ${camera.name}` });
    const enabled = h("input", { type: "checkbox", name: "enabled", checked: camera.enabled });
    const apply = async (change: Parameters<Api["updateCamera"]>[2]) => {
      listError.textContent = "";
      try {
        await api.updateCamera(room.id, camera.id, change);
        await refresh();
      } catch (e) {
        listError.textContent = `${camera.name}: ${(e as Error).message}`;
        await refresh();
      }
    };
    rename.addEventListener("change", () => rename.value.trim() && void apply({ name: rename.value.trim() }));
    enabled.addEventListener("change", () => void apply({ enabled: enabled.checked }));
    const change = h("button.small", {
      type: "button", name: "change-camera", "aria-label": `Change the address or login of ${camera.name}`,
      onclick: () => changeDialog(api, room, camera, refresh),
    }, "Change");
    const remove = h("button.small.danger", {
      type: "button", name: "remove-camera", "aria-label": `Remove ${camera.name}`,
      onclick: async () => {
        listError.textContent = "";
        try {
          await api.deleteCamera(room.id, camera.id);
        } catch (e) {
          listError.textContent = `${camera.name}: ${(e as Error).message}`;
        }
        await refresh();
      },
    }, "Remove");
    return h("li.camera", { dataset: { cameraId: camera.id } },
      rename,
      h("span.url", { title: camera.url }, camera.url, camera.hasCredentials ? " (with login)" : ""),
      h("label.inline", {}, enabled, "On"),
      h("div.row", {}, change, remove));
  };

  const refresh = async () => {
    try {
      const cameras = await api.cameras(room.id);
      list.replaceChildren(...(cameras.length ? cameras.map(row) : [h("li.empty", {}, "No cameras yet.")]));
    } catch (e) {
      listError.textContent = `Cannot list the cameras: ${(e as Error).message}`;
    }
  };

  openDialog(`Cameras of “${room.name}”`, [
    list, listError,
    h("fieldset", {}, h("legend", {}, "Add a camera"),
      h("label", {}, "Name", name),
      h("label", {}, "RTSP URL", url),
      h("label", {}, "Username (if the camera asks)", username),
      h("label", {}, "Password", password),
      h("label", {}, "Transport", transport)),
  ], [{
    label: "Add camera", primary: true,
    run: async () => {
      takeCredentials(url, username, password);
      if (!name.value.trim()) throw new Error("Give the camera a name.");
      if (!url.value.trim()) throw new Error("Give the camera's RTSP URL (rtsp://…).");
      await api.addCamera(room.id, {
        name: name.value.trim(), url: url.value.trim(),
        username: username.value || null, password: password.value || null,
        transport: transport.value as "tcp" | "udp",
      });
      for (const input of [name, url, username, password]) input.value = "";
      await refresh();
      name.focus();
      return false;
    },
  }]);
  void refresh();
  name.focus();
}

/**
 * Changes a camera's address or login (a refused password is fixed here). The stored login is
 * never shown: left empty it stays; typed, it replaces both; "Remove the login" drops it.
 */
function changeDialog(api: Api, room: { id: string }, camera: Camera, done: () => Promise<void>): void {
  const url = h("input", { name: "change-url", value: camera.url, maxLength: 2048, autocomplete: "off", spellcheck: "false" });
  const keep = camera.hasCredentials ? "unchanged" : "";
  const username = h("input", { name: "change-username", maxLength: 256, autocomplete: "off", spellcheck: "false", placeholder: keep });
  const password = h("input", { name: "change-password", type: "password", maxLength: 256, autocomplete: "new-password", placeholder: keep });
  const drop = h("input", { type: "checkbox", name: "remove-login" });
  url.addEventListener("change", () => takeCredentials(url, username, password));
  openDialog(`Change “${camera.name}”`, [
    h("label", {}, "RTSP URL", url),
    h("label", {}, "Username", username),
    h("label", {}, "Password", password),
    camera.hasCredentials ? h("label.inline", {}, drop, "Remove the login") : null,
  ].filter((n): n is HTMLLabelElement => n !== null), [{
    label: "Save", primary: true,
    run: async () => {
      takeCredentials(url, username, password);
      const change: CameraChange = {};
      if (url.value.trim() !== camera.url) change.url = url.value.trim();
      if (drop.checked) Object.assign(change, { username: null, password: null });
      else if (username.value || password.value) Object.assign(change, { username: username.value || null, password: password.value || null });
      if (Object.keys(change).length) await api.updateCamera(room.id, camera.id, change);
      await done();
      return true;
    },
  }]);
  url.focus();
}
