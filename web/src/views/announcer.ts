// Announcements for screen readers (joins, leaves, raised hands, chat): one polite live region;
// repeated text is still read (the region is cleared first).
import { h } from "../dom";

export class Announcer {
  readonly element = h("div.visually-hidden", { role: "status", "aria-live": "polite", "aria-atomic": "true" });
  private timer: ReturnType<typeof setTimeout> | undefined;

  say(text: string): void {
    clearTimeout(this.timer);
    this.element.textContent = "";
    this.timer = setTimeout(() => (this.element.textContent = text), 50);
  }
}
