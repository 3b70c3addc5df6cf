// The landing page: sign in or register, errors inline.
import type { AppContext } from "../app";
import { h, mount } from "../dom";

export function loginView(root: HTMLElement, ctx: AppContext): () => void {
  const error = h("p.error", { role: "alert", "aria-live": "polite" });
  const username = h("input", { name: "username", autocomplete: "username", required: true, maxLength: 32, placeholder: "Username" });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true, placeholder: "Password" });
  const submit = async (register: boolean) => {
    error.textContent = "";
    if (!form.reportValidity()) return;
    try {
      if (register) await ctx.api.register(username.value.trim(), password.value);
      await ctx.api.login(username.value.trim(), password.value);
      ctx.go("/rooms");
    } catch (e) {
      error.textContent = (e as Error).message;
    }
  };
  const form = h("form.card.login", { onsubmit: (e: Event) => { e.preventDefault(); void submit(false); } },
    h("label", {}, "Username", username),
    h("label", {}, "Password", password),
    error,
    h("div.row", {},
      h("button.primary", { type: "submit", name: "login" }, "Sign in"),
      h("button", { type: "button", name: "register", onclick: () => void submit(true) }, "Create account")),
  );
  const notice = ctx.notice;
  ctx.notice = null;
  mount(root, h("main.page.landing", {},
    h("h1", {}, "firesfu — realtime meetings"),
    h("p.lead", {}, "Video rooms for your team, signalled through Firestore."),
    notice ? h("p.notice", { role: "status" }, notice) : null,
    form));
  username.focus();
  return () => {};
}
