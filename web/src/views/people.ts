// The participant list: everyone's full name, muted and camera state, connection quality, a
// presenter badge and raised hands (first raised first).
import { h } from "../dom";
import { grade, type Measured } from "../quality";
import { icon } from "./icons";

export interface Person {
  key: string;
  name: string;
  self: boolean;
  audioOn: boolean;
  videoOn: boolean;
  presenting: boolean;
  /** Milliseconds since the epoch when the hand went up (null: down). */
  handSince: number | null;
  quality: Measured | null;
}

const GRADES = { good: "good connection", fair: "fair connection", poor: "poor connection", unknown: "connection unknown" };

export class PeoplePanel {
  private readonly title = h("h2", {}, "People");
  private readonly list = h("ul.people", {});
  readonly element = h("aside.panel.people-panel", { "aria-label": "People" }, this.title, this.list);

  update(people: Person[]): void {
    const sorted = [...people].sort((a, b) =>
      (a.handSince ?? Infinity) - (b.handSince ?? Infinity) || Number(b.self) - Number(a.self) || a.name.localeCompare(b.name));
    this.title.textContent = `People (${people.length})`;
    this.list.replaceChildren(...sorted.map((p) => {
      const q = p.quality ? grade(p.quality) : "unknown";
      return h("li", { dataset: { participant: p.name } },
        h("span.person-name", {}, p.self ? `${p.name} (you)` : p.name),
        h("span.person-state", {},
          p.handSince !== null ? h("span.badge.hand-badge", {}, icon("hand"), "Hand raised") : null,
          p.presenting ? h("span.badge", {}, "Presenting") : null,
          h("span", {}, p.audioOn ? "mic on" : "muted"),
          h("span", {}, p.videoOn ? "camera on" : "camera off"),
          p.self ? null : h("span.quality", { dataset: { grade: q } }, GRADES[q])));
    }));
  }
}
