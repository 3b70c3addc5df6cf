// The rooms grid: every room with its image, name and live participant count (polled every
// 3 s), create a room, change a room's image (owner), and the user menu.
import type { AppContext } from "../app";
import type { Room } from "../api";
import { h, mount } from "../dom";
import { camerasDialog } from "./cameras";
import { openDialog } from "./dialog";
import { imagePicker } from "./images";
import { userMenu } from "./usermenu";

const REFRESH_MS = 3000;

/** How many may present at once: 1 (the default), 2, 3 or anyone (0). */
function presentersPicker(current: number): { element: HTMLElement; value: () => number } {
  const select = h("select", { name: "max-presenters" },
    ...[[1, "One at a time"], [2, "Two at a time"], [3, "Three at a time"], [0, "Anyone, any number"]].map(([n, label]) =>
      h("option", { value: String(n), selected: n === current }, String(label))));
  return { element: h("label", {}, "Who may share a screen", select), value: () => Number(select.value) };
}

export function roomsView(root: HTMLElement, ctx: AppContext): () => void {
  const grid = h("section.rooms", { "aria-label": "Rooms" });
  const status = h("p.error", { role: "alert" });
  const cards = new Map<string, { card: HTMLElement; count: HTMLElement; name: HTMLElement; img: HTMLImageElement; change: HTMLElement | null }>();

  const cardFor = (room: Room) => {
    const count = h("span.count", { dataset: { testid: "count" } });
    const link = h("a", { href: `#/rooms/${encodeURIComponent(room.id)}` });
    const name = h("h3", {}, link);
    const img = h("img", { alt: "" });
    const mine = room.owner.id === ctx.api.user?.id;
    const change = mine
      ? h("button.small", { type: "button", name: "change-image", "aria-label": `Settings of ${room.name}`, onclick: (e: Event) => { e.stopPropagation(); changeImage(room); } }, "Settings")
      : null;
    const cameras = mine
      ? h("button.small", { type: "button", name: "cameras", "aria-label": `Cameras of ${room.name}`, onclick: (e: Event) => { e.stopPropagation(); camerasDialog(ctx.api, room); } }, "Cameras")
      : null;
    // The whole card opens the room for a pointer; keyboards and screen readers use its link.
    const card = h("article.room-card", {
      dataset: { roomId: room.id },
      onclick: (e: Event) => (e.target as Element).closest("a, button") === null && ctx.go(`/rooms/${room.id}`),
    }, h("div.thumb", {}, img), h("div.meta", {}, name, count, h("div.row", {}, change, cameras)));
    return { card, count, name: link, img, change };
  };

  const draw = (rooms: Room[]) => {
    const order: HTMLElement[] = [];
    for (const room of rooms) {
      let entry = cards.get(room.id);
      if (!entry) cards.set(room.id, (entry = cardFor(room)));
      entry.name.textContent = room.name;
      entry.count.textContent = room.participants === 1 ? "1 person in the room" : `${room.participants} people in the room`;
      entry.count.dataset.count = String(room.participants);
      const src = room.imageUrl ?? "";
      if (entry.img.getAttribute("src") !== src) src ? entry.img.setAttribute("src", src) : entry.img.removeAttribute("src");
      order.push(entry.card);
    }
    for (const id of [...cards.keys()]) if (!rooms.some((r) => r.id === id)) cards.delete(id);
    grid.replaceChildren(...(order.length ? order : [h("p.empty", {}, "No rooms yet: create the first one.")]));
  };

  const refresh = async () => {
    try {
      draw(await ctx.api.rooms());
      status.textContent = "";
    } catch (e) {
      if (!ctx.api.token) return ctx.go("/login");
      status.textContent = `Cannot load rooms: ${(e as Error).message}`;
    }
  };

  const changeImage = (room: Room) => {
    const picker = imagePicker(ctx.api, room.imageId);
    const presenters = presentersPicker(room.maxPresenters ?? 1);
    openDialog(`Settings of “${room.name}”`, [picker.element, presenters.element], [{
      label: "Save", primary: true,
      run: async () => {
        await ctx.api.updateRoom(room.id, { imageId: picker.selected(), maxPresenters: presenters.value() });
        await refresh();
        return true;
      },
    }]);
  };

  const createRoom = () => {
    const name = h("input", { name: "room-name", required: true, maxLength: 64, placeholder: "Weekly sync" });
    const picker = imagePicker(ctx.api, null);
    const presenters = presentersPicker(1);
    openDialog("New room", [h("label", {}, "Name", name), picker.element, presenters.element], [{
      label: "Create", primary: true,
      run: async () => {
        if (!name.value.trim()) throw new Error("Give the room a name.");
        const room = await ctx.api.createRoom(name.value.trim(), picker.selected(), presenters.value());
        await refresh();
        ctx.go(`/rooms/${room.id}`);
        return true;
      },
    }]);
    name.focus();
  };

  mount(root,
    h("header.topbar", {}, h("h1", {}, "firesfu"), userMenu(ctx)),
    h("main.page", {},
      h("div.row.heading", {}, h("h2", {}, "Rooms"), h("button.primary", { type: "button", name: "create-room", onclick: createRoom }, "New room")),
      status, grid));
  void refresh();
  const timer = setInterval(() => void refresh(), REFRESH_MS);
  return () => clearInterval(timer);
}
