// A modal dialog (the native <dialog>) that resolves when one of its actions runs.
import { h } from "../dom";

export function openDialog(title: string, body: Node[], actions: { label: string; primary?: boolean; danger?: boolean; run: () => Promise<boolean> }[]): HTMLDialogElement {
  const error = h("p.error", { role: "alert" });
  const dialog = h("dialog.modal", { "aria-label": title },
    h("h2", {}, title), ...body, error,
    h("div.row.actions", {},
      h("button", { type: "button", onclick: () => dialog.close() }, actions.length ? "Cancel" : "Close"),
      ...actions.map((a) => h(`button${a.primary ? ".primary" : ""}${a.danger ? ".danger" : ""}` as "button", {
        type: "button",
        onclick: async () => {
          error.textContent = "";
          try {
            if (await a.run()) dialog.close();
          } catch (e) {
            error.textContent = (e as Error).message;
          }
        },
      }, a.label))));
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  return dialog;
}
