// The meeting's control bar: icon buttons with visible labels (hidden on narrow screens, still
// their accessible names), toggles as `aria-pressed`, a keyboard shortcut for each main one
// (Alt + a letter, shown in the tooltip and in the shortcuts dialog).
import { h } from "../dom";
import { icon, type IconName } from "./icons";
import { openDialog } from "./dialog";

export interface Control {
  button: HTMLButtonElement;
  /** Shows the state: label, icon, pressed. */
  set: (label: string, iconName: IconName, pressed?: boolean) => void;
}

export interface ControlSpec {
  name: string;
  label: string;
  icon: IconName;
  /** `KeyboardEvent.code` of the Alt shortcut (e.g. "KeyA"). */
  key?: string;
  danger?: boolean;
  run: () => void;
}

const keyLabel = (code: string) => `Alt+${code.replace(/^Key/, "")}`;

export function control(spec: ControlSpec): Control {
  const text = h("span.label", {}, spec.label);
  const button = h(`button.control${spec.danger ? ".danger" : ""}` as "button", { type: "button", name: spec.name, onclick: spec.run }, icon(spec.icon), text);
  if (spec.key) button.setAttribute("aria-keyshortcuts", keyLabel(spec.key));
  const set = (label: string, iconName: IconName, pressed?: boolean) => {
    text.textContent = label;
    button.replaceChild(icon(iconName), button.firstChild!);
    if (!button.disabled) button.title = spec.key ? `${label} (${keyLabel(spec.key)})` : label;
    if (pressed !== undefined) button.setAttribute("aria-pressed", String(pressed));
  };
  set(spec.label, spec.icon);
  return { button, set };
}

/**
 * Runs the Alt shortcuts of `specs` while `active()`; not while typing in a field. Returns the
 * function that stops listening.
 */
export function shortcuts(specs: ControlSpec[], active: () => boolean): () => void {
  const onKey = (e: KeyboardEvent) => {
    if (!e.altKey || e.ctrlKey || e.metaKey || !active()) return;
    const spec = specs.find((s) => s.key === e.code);
    if (!spec || document.querySelector<HTMLButtonElement>(`button.control[name="${spec.name}"]`)?.disabled) return;
    e.preventDefault();
    spec.run();
  };
  document.addEventListener("keydown", onKey);
  return () => document.removeEventListener("keydown", onKey);
}

export function showShortcuts(specs: ControlSpec[]): void {
  const rows = specs.filter((s) => s.key).map((s) => h("tr", {}, h("th", { scope: "row" }, h("kbd", {}, keyLabel(s.key!))), h("td", {}, s.label)));
  openDialog("Keyboard shortcuts", [h("table.shortcuts", {}, h("tbody", {}, ...rows)),
    h("p.hint", {}, "Tab moves between controls; Enter or Space presses one; Escape closes a dialog.")], []);
}
