// The meeting app: login → rooms grid → pre-join → room. Hash routes, so a reload keeps the
// page: `#/login`, `#/rooms`, `#/rooms/{id}`.
import { Api, type PublicConfig } from "./api";
import { h, mount } from "./dom";
import { loginView } from "./views/login";
import { roomsView } from "./views/rooms";
import { prejoinView } from "./views/prejoin";
import { meetingView } from "./views/meeting";

export interface AppContext {
  api: Api;
  config: () => Promise<PublicConfig>;
  go: (route: string) => void;
  /** Shown once on the next page (e.g. "Your account was erased."). */
  notice: string | null;
}

const root = document.getElementById("app")!;
let configPromise: Promise<PublicConfig> | null = null;
// What the current view needs to stop (listeners, timers, media) when the route changes.
let teardown: (() => void) | null = null;

const ctx: AppContext = {
  api: new Api(),
  config: () => (configPromise ??= ctx.api.config()),
  go: (route) => {
    if (location.hash === `#${route}`) void render();
    else location.hash = route;
  },
  notice: null,
};

async function render(): Promise<void> {
  teardown?.();
  teardown = null;
  const route = location.hash.replace(/^#/, "") || "/rooms";
  if (!ctx.api.token && route !== "/login") return ctx.go("/login");
  try {
    const room = route.match(/^\/rooms\/([^/]+)$/);
    if (route === "/login") teardown = loginView(root, ctx);
    else if (room) {
      // Pre-join, then the meeting (same route: a reload asks for devices again).
      teardown = await prejoinView(root, ctx, decodeURIComponent(room[1]), (choice) => {
        teardown?.();
        teardown = meetingView(root, ctx, choice);
      });
    } else teardown = roomsView(root, ctx);
  } catch (e) {
    mount(root, h("main.page", {}, h("p.error", { role: "alert" }, `Something went wrong: ${(e as Error).message}`),
      h("a", { href: "#/rooms" }, "Back to rooms")));
  }
}

window.addEventListener("hashchange", () => void render());
void render();
