// Which tile the room shows large (pure). Grid: none. Presenter: the first screen share (a
// remote one before your own). Speaker: the room's dominant speaker, else the last one heard,
// else the first other person. A pinned tile wins over every layout.

export type Layout = "grid" | "presenter" | "speaker";
export const LAYOUTS: readonly Layout[] = ["grid", "presenter", "speaker"];

export interface Arrangement {
  layout: Layout;
  /** A tile the user pinned (null: none). */
  pinned: string | null;
  /** Screen-share tiles, remote ones first. */
  screens: string[];
  /** The dominant speaker's tile, or the last one the room had (null: nobody yet). */
  speaker: string | null;
  /** Every tile, in grid order (yours first). */
  keys: string[];
  /** Your own tile's key (never the speaker stage on its own). */
  self: string;
}

/** The tile shown large, or null for the plain grid. */
export function stageOf(a: Arrangement): string | null {
  if (a.pinned && a.keys.includes(a.pinned)) return a.pinned;
  if (a.layout === "presenter") return a.screens[0] ?? null;
  if (a.layout === "speaker") {
    if (a.speaker && a.speaker !== a.self && a.keys.includes(a.speaker)) return a.speaker;
    return a.keys.find((k) => k !== a.self) ?? null;
  }
  return null;
}

/**
 * The layout after the set of screen shares changed: a new share switches to the presenter
 * layout; when the last one ends the layout goes back to what it was before (`before`).
 */
export function afterShares(current: Layout, before: Layout, hadShares: boolean, hasShares: boolean, newShare: boolean): { layout: Layout; before: Layout } {
  if (hasShares && newShare) return { layout: "presenter", before: hadShares ? before : current };
  if (hadShares && !hasShares && current === "presenter") return { layout: before === "presenter" ? "grid" : before, before };
  return { layout: current, before };
}
