// The sidecar's HTTP API (docs/sidecar.md). Errors are RFC 9457 problems; their `detail`
// is what the UI shows.

export class ApiError extends Error {
  constructor(public status: number, public type: string, message: string) {
    super(message);
  }
}

export interface User { id: string; username: string; firebaseUid: string }
export interface Room {
  id: string; name: string; imageId: string | null; imageUrl: string | null;
  owner: { id: string; username: string }; participants: number;
  /** How many may share a screen at once (0: any number). */
  maxPresenters?: number;
}
export interface Image { id: string; name: string; url: string; seeded: boolean }
export interface Join {
  roomId: string; token: string; displayName: string; traceparent?: string | null;
  firebase: { uid: string; customToken?: string; emulator?: boolean };
  /** STUN, and TURN with credentials valid for the meeting. */
  iceServers?: RTCIceServer[];
}
/** A room's IP camera as its owner sees it (never with a username or password). */
export interface Camera {
  id: string; room: string; name: string; url: string; transport: "tcp" | "udp"; enabled: boolean;
  hasCredentials: boolean; createdAt: string; updatedAt: string;
}
/** What an owner sends to add or change a camera (null or "" removes a username or password). */
export interface CameraChange {
  name?: string; url?: string; username?: string | null; password?: string | null;
  transport?: "tcp" | "udp"; enabled?: boolean;
}
export interface PublicConfig {
  firebase: { projectId: string; apiKey: string; authDomain?: string | null };
  firestoreEmulator: string | null;
  iceServers?: RTCIceServer[];
}

const TOKEN_KEY = "firesfu.accessToken";
const USER_KEY = "firesfu.user";

export class Api {
  token: string | null = sessionStorage.getItem(TOKEN_KEY);
  user: User | null = JSON.parse(sessionStorage.getItem(USER_KEY) ?? "null");

  private async call<T>(method: string, path: string, body?: unknown, raw?: { type: string; data: Blob }): Promise<T> {
    const headers: Record<string, string> = {};
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    let payload: BodyInit | undefined;
    if (raw) {
      headers["Content-Type"] = raw.type;
      payload = raw.data;
    } else if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    }
    const response = await fetch(path, { method, headers, body: payload });
    if (response.status === 204) return undefined as T;
    const text = await response.text();
    const json = text ? JSON.parse(text) : null;
    if (!response.ok) {
      if (response.status === 401 && path !== "/v1/sessions") this.forget();
      throw new ApiError(response.status, json?.type ?? "", json?.detail ?? json?.title ?? `HTTP ${response.status}`);
    }
    return json as T;
  }

  private forget() {
    this.token = null;
    this.user = null;
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(USER_KEY);
  }

  config() { return this.call<PublicConfig>("GET", "/v1/config"); }
  async register(username: string, password: string) { await this.call("POST", "/v1/accounts", { username, password }); }
  async login(username: string, password: string) {
    const r = await this.call<{ accessToken: string; user: User }>("POST", "/v1/sessions", { username, password });
    this.token = r.accessToken;
    this.user = r.user;
    sessionStorage.setItem(TOKEN_KEY, r.accessToken);
    sessionStorage.setItem(USER_KEY, JSON.stringify(r.user));
  }
  async logout() {
    try { await this.call("DELETE", "/v1/sessions/current"); } finally { this.forget(); }
  }
  async erase() {
    await this.call("DELETE", "/v1/me");
    this.forget();
  }
  async rooms() { return (await this.call<{ rooms: Room[] }>("GET", "/v1/rooms")).rooms; }
  room(id: string) { return this.call<Room>("GET", `/v1/rooms/${id}`); }
  createRoom(name: string, imageId: string | null, maxPresenters = 1) { return this.call<Room>("POST", "/v1/rooms", { name, imageId, maxPresenters }); }
  updateRoom(id: string, change: { name?: string; imageId?: string | null; maxPresenters?: number }) { return this.call<Room>("PATCH", `/v1/rooms/${id}`, change); }
  async images() { return (await this.call<{ images: Image[] }>("GET", "/v1/images")).images; }
  upload(file: File) {
    return this.call<Image>("POST", `/v1/images?name=${encodeURIComponent(file.name.slice(0, 64))}`, undefined, { type: file.type, data: file });
  }
  async cameras(roomId: string) { return (await this.call<{ cameras: Camera[] }>("GET", `/v1/rooms/${roomId}/cameras`)).cameras; }
  addCamera(roomId: string, camera: CameraChange) { return this.call<Camera>("POST", `/v1/rooms/${roomId}/cameras`, camera); }
  updateCamera(roomId: string, id: string, change: CameraChange) { return this.call<Camera>("PATCH", `/v1/rooms/${roomId}/cameras/${id}`, change); }
  deleteCamera(roomId: string, id: string) { return this.call<void>("DELETE", `/v1/rooms/${roomId}/cameras/${id}`); }
  join(roomId: string, displayName: string, publish: boolean) {
    return this.call<Join>("POST", `/v1/rooms/${roomId}/join`, { displayName, publish, subscribe: true });
  }
}
