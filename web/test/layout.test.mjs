// The meeting's layout rules (web/src/views/layout.ts, pure), bundled on the fly by esbuild.
import { test } from "node:test";
import assert from "node:assert/strict";
import { build } from "esbuild";

const bundle = await build({ entryPoints: [new URL("../src/views/layout.ts", import.meta.url).pathname], bundle: true, format: "esm", write: false });
const { stageOf, afterShares } = await import(`data:text/javascript;base64,${Buffer.from(bundle.outputFiles[0].text).toString("base64")}`);

const room = { layout: "grid", pinned: null, screens: [], speaker: null, keys: ["self", "ada", "bob"], self: "self" };

test("the grid has no stage; a pinned tile is on it in every layout", () => {
  assert.equal(stageOf(room), null);
  for (const layout of ["grid", "presenter", "speaker"]) assert.equal(stageOf({ ...room, layout, pinned: "bob" }), "bob");
  assert.equal(stageOf({ ...room, pinned: "gone" }), null, "a pin on someone who left is ignored");
});

test("presenter: the first share, none without shares", () => {
  const keys = [...room.keys, "ada:screen", "self:screen"];
  assert.equal(stageOf({ ...room, layout: "presenter", keys, screens: ["ada:screen", "self:screen"] }), "ada:screen");
  assert.equal(stageOf({ ...room, layout: "presenter" }), null);
});

test("speaker: the speaker, never yourself, else the first other person", () => {
  assert.equal(stageOf({ ...room, layout: "speaker", speaker: "bob" }), "bob");
  assert.equal(stageOf({ ...room, layout: "speaker", speaker: "self" }), "ada");
  assert.equal(stageOf({ ...room, layout: "speaker" }), "ada");
  assert.equal(stageOf({ ...room, layout: "speaker", keys: ["self"] }), null);
});

test("a new share switches to presenter; the last share ending goes back", () => {
  let s = afterShares("speaker", "grid", false, true, true);
  assert.deepEqual(s, { layout: "presenter", before: "speaker" });
  s = afterShares(s.layout, s.before, true, true, true); // a second share keeps what was before
  assert.deepEqual(s, { layout: "presenter", before: "speaker" });
  assert.deepEqual(afterShares("presenter", "speaker", true, false, false), { layout: "speaker", before: "speaker" });
  assert.deepEqual(afterShares("grid", "grid", true, false, false), { layout: "grid", before: "grid" }, "a layout chosen during the share stays");
  assert.deepEqual(afterShares("presenter", "presenter", true, false, false), { layout: "grid", before: "presenter" });
  assert.deepEqual(afterShares("grid", "grid", true, true, false), { layout: "grid", before: "grid" }, "no new share: the user's choice stays");
});
