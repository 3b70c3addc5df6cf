// The signed-in user's menu: log out, or erase the account (after typing the username).
import type { AppContext } from "../app";
import { h } from "../dom";
import { openDialog } from "./dialog";

export function userMenu(ctx: AppContext): HTMLElement {
  const username = ctx.api.user?.username ?? "";
  const menu = h("div.menu", { role: "menu", hidden: true },
    h("button", { type: "button", role: "menuitem", name: "logout", onclick: async () => { await ctx.api.logout().catch(() => {}); ctx.go("/login"); } }, "Log out"),
    h("button.danger", { type: "button", role: "menuitem", name: "erase", onclick: () => { menu.hidden = true; confirmErase(); } }, "Erase account…"));
  const confirmErase = () => {
    const typed = h("input", { name: "confirm-username", autocomplete: "off", placeholder: username });
    openDialog("Erase your account?", [
      h("p", {}, "This deletes your account, the rooms you own (with their images) and your sessions and chat messages. It cannot be undone."),
      h("label", {}, `Type “${username}” to confirm`, typed),
    ], [{
      label: "Erase account", danger: true,
      run: async () => {
        if (typed.value !== username) throw new Error("The username does not match.");
        await ctx.api.erase();
        ctx.notice = "Your account was erased.";
        ctx.go("/login");
        return true;
      },
    }]);
    typed.focus();
  };
  const toggle = h("button.user", { type: "button", "aria-haspopup": "menu", name: "user-menu", onclick: () => { menu.hidden = !menu.hidden; } }, username, " ▾");
  return h("div.user-menu", {}, toggle, menu);
}
