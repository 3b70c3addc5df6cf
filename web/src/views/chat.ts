// The room's text chat: rooms/{roomId}/messages, readable and writable by the room's members
// (firestore.rules), immutable, at most 500 characters.
import { addDoc, collection, limitToLast, onSnapshot, orderBy, query, serverTimestamp, type Firestore, type Timestamp } from "firebase/firestore";
import { h } from "../dom";
import { watch } from "../watch";

const MAX_CHARS = 500;
const HISTORY = 200;

export interface Chat {
  element: HTMLElement;
  attach: (db: Firestore, roomId: string, me: { uid: string; displayName: string }) => void;
  detach: () => void;
}

/** `onIncoming(name)`: a message from someone else arrived (not the history at start). */
export function chatPanel(onIncoming: (from: string) => void = () => {}): Chat {
  const list = h("ol.messages", {});
  const log = h("div.log", { role: "log", "aria-live": "polite", "aria-label": "Messages" }, list);
  const seen = new Set<string>();
  let loaded = false;
  const error = h("p.error", { role: "alert" });
  const input = h("input", { name: "chat", maxLength: MAX_CHARS, placeholder: "Message everyone", "aria-label": "Message everyone", autocomplete: "off", disabled: true });
  let target: { db: Firestore; roomId: string; me: { uid: string; displayName: string } } | null = null;
  let stop: (() => void) | null = null;
  const form = h("form.send", {
    onsubmit: async (e: Event) => {
      e.preventDefault();
      const text = input.value.trim();
      if (!text || !target) return;
      error.textContent = "";
      // Cleared at once: what the user types while this message is on its way is theirs.
      input.value = "";
      try {
        await addDoc(collection(target.db, "rooms", target.roomId, "messages"), {
          uid: target.me.uid, displayName: target.me.displayName, text, createdAt: serverTimestamp(),
        });
      } catch (err) {
        error.textContent = `Not sent: ${(err as Error).message}`;
        if (!input.value) input.value = text;
      }
    },
  }, input, h("button", { type: "submit" }, "Send"));

  const draw = (docs: { uid: string; displayName: string; text: string; createdAt: Timestamp | null }[]) => {
    list.replaceChildren(...docs.map((m) => h("li", { dataset: { mine: String(m.uid === target?.me.uid) } },
      h("span.who", {}, m.displayName),
      h("time", {}, m.createdAt ? m.createdAt.toDate().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : ""),
      h("p.text", {}, m.text))));
    log.scrollTop = log.scrollHeight;
  };

  return {
    element: h("aside.panel.chat", { "aria-label": "Chat" }, h("h2", {}, "Chat"),
      log, error, form),
    attach(db, roomId, me) {
      target = { db, roomId, me };
      if (stop) return;
      const q = query(collection(db, "rooms", roomId, "messages"), orderBy("createdAt"), limitToLast(HISTORY));
      stop = watch((onError) => onSnapshot(q, (snap) => {
        input.disabled = false;
        for (const d of snap.docs) {
          if (seen.has(d.id)) continue;
          seen.add(d.id);
          const m = d.data();
          if (loaded && m.uid !== target?.me.uid) onIncoming(String(m.displayName));
        }
        loaded = true;
        draw(snap.docs.map((d) => d.data({ serverTimestamps: "estimate" }) as never));
      }, onError), "chat");
    },
    detach() {
      stop?.();
      stop = null;
    },
  };
}
