// firestore.rules against the Firestore emulator, as browsers see them (node --test).
// FIRESTORE_EMULATOR_HOST must point at a running emulator (make test starts one).
import { readFileSync } from "node:fs";
import { after, before, beforeEach, describe, it } from "node:test";
import {
  assertFails,
  assertSucceeds,
  initializeTestEnvironment,
} from "@firebase/rules-unit-testing";
import {
  addDoc, collection, deleteDoc, doc, getDoc, getDocs, query, serverTimestamp, setDoc, Timestamp, updateDoc, where,
} from "firebase/firestore";

const [host, port] = process.env.FIRESTORE_EMULATOR_HOST.split(":");
let env;

const offer = (revision = 1) => ({ sdp: "v=0\r\n", revision });
const session = (uid, extra = {}) => ({
  v: 1, uid, displayName: "Ada", token: null, offer: offer(), state: "offered",
  expiresAt: Timestamp.fromMillis(Date.now() + 3600_000), ...extra,
});

before(async () => {
  env = await initializeTestEnvironment({
    projectId: `demo-rules-${Date.now()}`,
    firestore: { host, port: Number(port), rules: readFileSync(new URL("../../firestore.rules", import.meta.url), "utf8") },
  });
});
after(async () => env?.cleanup());

beforeEach(async () => {
  await env.clearFirestore();
  await env.withSecurityRulesDisabled(async (ctx) => {
    const db = ctx.firestore();
    await setDoc(doc(db, "rooms/r1"), { name: "Room" });
    await setDoc(doc(db, "rooms/r1/sessions/theirs"), session("bob"));
    await setDoc(doc(db, "rooms/r1/participants/theirs"), { displayName: "Bob", uid: "bob" });
    await setDoc(doc(db, "rooms/r1/members/bob"), { uid: "bob" });
    await setDoc(doc(db, "rooms/r1/live/speaker"), { session: "theirs", displayName: "Bob", updatedAt: serverTimestamp() });
    await setDoc(doc(db, "rooms/r1/messages/m1"), { uid: "bob", displayName: "Bob", text: "hi" });
    await setDoc(doc(db, "joinTokens/j1"), { session: "r1/theirs" });
    await setDoc(doc(db, "rooms/r1/cameras/c1"), { name: "Door", enabled: true, state: "live", codec: "h264" });
    await setDoc(doc(db, "cameraSources/c1"), { v: 1, room: "r1", name: "Door", enabled: true, transport: "tcp", sealed: "v1.AAAA" });
  });
});

const as = (uid) => env.authenticatedContext(uid).firestore();
const anon = () => env.unauthenticatedContext().firestore();
const mine = (db, id = "s1") => doc(db, `rooms/r1/sessions/${id}`);

describe("rooms", () => {
  it("signed-in users read rooms", () => assertSucceeds(getDoc(doc(as("ada"), "rooms/r1"))));
  it("anonymous users do not", () => assertFails(getDoc(doc(anon(), "rooms/r1"))));
  it("browsers never write rooms", () => assertFails(setDoc(doc(as("ada"), "rooms/r2"), { name: "x" })));
});

describe("sessions", () => {
  it("a user creates their own session with an offer", () => assertSucceeds(setDoc(mine(as("ada")), session("ada"))));
  it("not for another uid", () => assertFails(setDoc(mine(as("ada")), session("bob"))));
  it("not without signing in", () => assertFails(setDoc(mine(anon()), session("ada"))));
  it("not in a room that does not exist", () => assertFails(setDoc(doc(as("ada"), "rooms/nope/sessions/s1"), session("ada"))));
  it("not with a server field", () => assertFails(setDoc(mine(as("ada")), session("ada", { answer: { sdp: "x", revision: 1 } }))));
  it("not with a first revision other than 1", () => assertFails(setDoc(mine(as("ada")), session("ada", { offer: offer(2) }))));
  it("names in any script with emoji, 64 UTF-16 units", () =>
    assertSucceeds(setDoc(mine(as("ada")), session("ada", { displayName: "Zoë 👩🏽‍💻 محمد 李" + "é".repeat(46) }))));
  for (const [what, name] of [
    ["NUL", "Ada\u0000"], ["BEL", "bell\u0007"], ["right-to-left override", "\u202Enimda"],
    ["byte-order mark", "\uFEFFBob"], ["isolate", "a\u2067b"], ["line separator", "a\u2028b"],
    ["newline", "two\nlines"], ["only spaces", "   "], ["65 characters", "é".repeat(65)], ["33 emoji (66 units)", "👍".repeat(33)],
  ]) {
    it(`not a display name with ${what}`, () => assertFails(setDoc(mine(as("ada")), session("ada", { displayName: name }))));
  }
  it("not with an SDP over 64 KiB", () => assertFails(setDoc(mine(as("ada")), session("ada", { offer: { sdp: "x".repeat(65537), revision: 1 } }))));
  it("not with a display name over 64 characters", () => assertFails(setDoc(mine(as("ada")), session("ada", { displayName: "x".repeat(65) }))));
  it("not with an expiry more than a day ahead", () => assertFails(setDoc(mine(as("ada")), session("ada", { expiresAt: Timestamp.fromMillis(Date.now() + 3 * 86400_000) }))));
  it("a user reads their own session but not another's", async () => {
    await setDoc(mine(as("ada")), session("ada"));
    await assertSucceeds(getDoc(mine(as("ada"))));
    await assertFails(getDoc(mine(as("ada"), "theirs")));
  });
  it("re-offers must raise the revision", async () => {
    const db = as("ada");
    await setDoc(mine(db), session("ada"));
    await assertFails(updateDoc(mine(db), { offer: offer(1), state: "offered" }));
    await assertSucceeds(updateDoc(mine(db), { offer: offer(2), state: "offered" }));
  });
  it("a client cannot write the answer, the state answered or the slots", async () => {
    const db = as("ada");
    await setDoc(mine(db), session("ada"));
    await assertFails(updateDoc(mine(db), { answer: { sdp: "x", revision: 1 } }));
    await assertFails(updateDoc(mine(db), { state: "answered" }));
    await assertFails(updateDoc(mine(db), { slots: {} }));
  });
  it("leaving: closed, or delete", async () => {
    const db = as("ada");
    await setDoc(mine(db), session("ada"));
    await assertSucceeds(updateDoc(mine(db), { state: "closed" }));
    await assertSucceeds(deleteDoc(mine(db)));
  });
  it("media on/off is writable, as booleans only", async () => {
    const db = as("ada");
    await setDoc(mine(db), session("ada"));
    await assertSucceeds(updateDoc(mine(db), { media: { audio: false, video: true } }));
    await assertFails(updateDoc(mine(db), { media: { audio: "off" } }));
  });
  it("sources change with an offer only, as a bounded map", async () => {
    const db = as("ada");
    await assertSucceeds(setDoc(mine(db), session("ada", { sources: { "1": "screen" } })));
    await assertSucceeds(updateDoc(mine(db), { offer: offer(2), state: "offered", sources: { "1": "screen", "2": "screen-audio" } }));
    await assertFails(updateDoc(mine(db), { sources: {} }));
    await assertFails(updateDoc(mine(db), { offer: offer(3), state: "offered", sources: "screen" }));
    const many = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [String(i), "screen"]));
    await assertFails(updateDoc(mine(db), { offer: offer(3), state: "offered", sources: many }));
  });
  it("a raised hand is a boolean, writable without a re-offer", async () => {
    const db = as("ada");
    await setDoc(mine(db), session("ada"));
    await assertSucceeds(updateDoc(mine(db), { hand: true }));
    await assertSucceeds(updateDoc(mine(db), { hand: false, media: { audio: false, video: false } }));
    await assertFails(updateDoc(mine(db), { hand: "up" }));
    await assertFails(updateDoc(mine(as("bob")), { hand: true }));
  });
  it("a viewer session names whom it watches when it is created, never later", async () => {
    const db = as("ada");
    await assertSucceeds(setDoc(mine(db), session("ada", { watch: "presenter" })));
    await assertFails(updateDoc(mine(db), { watch: "theirs" }));
    await assertFails(setDoc(mine(db, "s2"), session("ada", { watch: "" })));
    await assertFails(setDoc(mine(db, "s3"), session("ada", { watch: 7 })));
  });
  it("only the server mutes a participant's tracks", async () => {
    const db = as("ada");
    await assertFails(setDoc(mine(db), session("ada", { muted: { "0": true } })));
    await setDoc(mine(db), session("ada"));
    await env.withSecurityRulesDisabled((ctx) => updateDoc(mine(ctx.firestore()), { muted: { "0": true } }));
    await assertFails(updateDoc(mine(db), { muted: {} }));
    await assertFails(updateDoc(mine(db), { muted: { "0": false }, media: { audio: true, video: true } }));
    await assertSucceeds(updateDoc(mine(db), { media: { audio: true, video: false } }));
  });
  it("a session may be created with receive", () =>
    assertSucceeds(setDoc(mine(as("ada")), session("ada", { receive: { "2": { maxHeight: 360 } } }))));
  it("receive alone is writable without a re-offer", async () => {
    const db = as("ada");
    await setDoc(mine(db), session("ada"));
    await env.withSecurityRulesDisabled((ctx) => updateDoc(mine(ctx.firestore()), { state: "connected", answer: { sdp: "x", revision: 1 } }));
    await assertSucceeds(updateDoc(mine(db), { receive: { "3": { maxHeight: 360 }, "5": { maxHeight: 0 }, "7": { maxHeight: 1080, pinned: true } } }));
    await assertSucceeds(updateDoc(mine(db), { receive: {} }));
    await assertSucceeds(updateDoc(mine(db), { receive: { "3": { maxHeight: 720 } }, media: { audio: true, video: false } }));
  });
  it("receive may change with a re-offer", async () => {
    const db = as("ada");
    await setDoc(mine(db), session("ada"));
    await assertSucceeds(updateDoc(mine(db), { offer: offer(2), state: "offered", receive: { "4": { maxHeight: 180 } } }));
  });
  it("receive must be a map", async () => {
    const db = as("ada");
    await assertFails(setDoc(mine(db), session("ada", { receive: [360] })));
    await setDoc(mine(db), session("ada"));
    await assertFails(updateDoc(mine(db), { receive: "all" }));
    await assertFails(updateDoc(mine(db), { receive: null }));
  });
  it("receive holds at most 128 slots", async () => {
    const db = as("ada");
    const slots = (n) => Object.fromEntries(Array.from({ length: n }, (_, i) => [String(i), { maxHeight: 360 }]));
    await setDoc(mine(db), session("ada"));
    await assertSucceeds(updateDoc(mine(db), { receive: slots(128) }));
    await assertFails(updateDoc(mine(db), { receive: slots(129) }));
    await assertFails(setDoc(mine(db, "s2"), session("ada", { receive: slots(129) })));
  });
  it("receive cannot come with a server field or another state", async () => {
    const db = as("ada");
    await setDoc(mine(db), session("ada"));
    await assertFails(updateDoc(mine(db), { receive: { "3": { maxHeight: 360 } }, slots: {} }));
    await assertFails(updateDoc(mine(db), { receive: { "3": { maxHeight: 360 } }, layers: { "0": { f: false } } }));
    await assertFails(updateDoc(mine(db), { receive: { "3": { maxHeight: 360 } }, state: "answered" }));
  });
  it("a client cannot write layers", async () => {
    const db = as("ada");
    await assertFails(setDoc(mine(db), session("ada", { layers: { "0": { f: true } } })));
    await setDoc(mine(db), session("ada"));
    await assertFails(updateDoc(mine(db), { layers: { "0": { f: true } } }));
  });
  it("nobody else may touch a user's session", () => assertFails(updateDoc(mine(as("ada"), "theirs"), { state: "closed" })));
});

describe("roster and chat", () => {
  it("non-members cannot read the roster", () => assertFails(getDocs(collection(as("ada"), "rooms/r1/participants"))));
  it("members read the roster", () => assertSucceeds(getDocs(collection(as("bob"), "rooms/r1/participants"))));
  it("nobody writes the roster", () => assertFails(setDoc(doc(as("bob"), "rooms/r1/participants/x"), { displayName: "x" })));
  it("non-members cannot read or post chat", async () => {
    await assertFails(getDocs(collection(as("ada"), "rooms/r1/messages")));
    await assertFails(addDoc(collection(as("ada"), "rooms/r1/messages"), { uid: "ada", displayName: "Ada", text: "hi", createdAt: serverTimestamp() }));
  });
  it("members read and post chat", async () => {
    await assertSucceeds(getDocs(collection(as("bob"), "rooms/r1/messages")));
    await assertSucceeds(addDoc(collection(as("bob"), "rooms/r1/messages"), { uid: "bob", displayName: "Bob", text: "hello", createdAt: serverTimestamp() }));
  });
  it("chat messages are bounded and attributed", async () => {
    const msgs = collection(as("bob"), "rooms/r1/messages");
    await assertFails(addDoc(msgs, { uid: "bob", displayName: "Bob", text: "x".repeat(501), createdAt: serverTimestamp() }));
    await assertFails(addDoc(msgs, { uid: "bob", displayName: "Bob", text: "", createdAt: serverTimestamp() }));
    await assertFails(addDoc(msgs, { uid: "ada", displayName: "Ada", text: "spoof", createdAt: serverTimestamp() }));
    await assertFails(addDoc(msgs, { uid: "bob", displayName: "Bob", text: "old", createdAt: Timestamp.fromMillis(0) }));
    await assertFails(addDoc(msgs, { uid: "bob", displayName: "Bob", text: "x", createdAt: serverTimestamp(), pinned: true }));
  });
  it("chat messages are immutable", async () => {
    await assertFails(updateDoc(doc(as("bob"), "rooms/r1/messages/m1"), { text: "edited" }));
    await assertFails(deleteDoc(doc(as("bob"), "rooms/r1/messages/m1")));
  });
  it("users read only their own membership", async () => {
    await assertSucceeds(getDoc(doc(as("bob"), "rooms/r1/members/bob")));
    await assertFails(getDoc(doc(as("ada"), "rooms/r1/members/bob")));
    await assertFails(setDoc(doc(as("ada"), "rooms/r1/members/ada"), { uid: "ada" }));
  });
  it("join-token bookkeeping is server-only", () => assertFails(getDoc(doc(as("bob"), "joinTokens/j1"))));
  it("the monitors' lease is server-only", async () => {
    await assertFails(getDoc(doc(as("bob"), "fleet/monitorLease")));
    await assertFails(setDoc(doc(as("bob"), "fleet/monitorLease"), { holder: "bob", expiresAtMs: 9e15, term: 99 }));
  });
  it("a room's assignment is not client-writable", () =>
    assertFails(updateDoc(doc(as("ada"), "rooms/r1"), { assignment: { instance: "mine", epoch: 9 } })));
});

describe("live room state (the dominant speaker)", () => {
  const speaker = (db) => doc(db, "rooms/r1/live/speaker");
  it("members read the speaker", () => assertSucceeds(getDoc(speaker(as("bob")))));
  it("members watch the live collection", () => assertSucceeds(getDocs(collection(as("bob"), "rooms/r1/live"))));
  it("non-members cannot read it", async () => {
    await assertFails(getDoc(speaker(as("ada"))));
    await assertFails(getDocs(collection(as("ada"), "rooms/r1/live")));
  });
  it("anonymous users cannot read it", () => assertFails(getDoc(speaker(anon()))));
  it("no client writes it, not even a member", async () => {
    const written = { session: "theirs", displayName: "Bob", updatedAt: serverTimestamp() };
    await assertFails(setDoc(speaker(as("bob")), written));
    await assertFails(updateDoc(speaker(as("bob")), { session: null, displayName: null }));
    await assertFails(deleteDoc(speaker(as("bob"))));
    await assertFails(setDoc(doc(as("bob"), "rooms/r1/live/other"), written));
    await assertFails(setDoc(speaker(as("ada")), written));
  });
});

describe("cameras", () => {
  const pub = (db, id = "c1") => doc(db, `rooms/r1/cameras/${id}`);
  const source = (db, id = "c1") => doc(db, `cameraSources/${id}`);
  it("a signed-in user reads a camera's public document where they read the room", async () => {
    await assertSucceeds(getDoc(doc(as("ada"), "rooms/r1")));
    await assertSucceeds(getDoc(pub(as("ada"))));
    await assertSucceeds(getDocs(collection(as("ada"), "rooms/r1/cameras")));
  });
  it("anonymous users do not", async () => {
    await assertFails(getDoc(pub(anon())));
    await assertFails(getDocs(collection(anon(), "rooms/r1/cameras")));
  });
  it("no client writes a camera's public document, not even a member", async () => {
    await assertFails(setDoc(pub(as("bob"), "c2"), { name: "Mine", enabled: true, state: "idle" }));
    await assertFails(updateDoc(pub(as("bob")), { state: "live" }));
    await assertFails(updateDoc(pub(as("ada")), { name: "Renamed" }));
    await assertFails(deleteDoc(pub(as("bob"))));
  });
  it("no client gets or lists camera sources", async () => {
    await assertFails(getDoc(source(as("bob"))));
    await assertFails(getDoc(source(as("ada"))));
    await assertFails(getDocs(collection(as("bob"), "cameraSources")));
    await assertFails(getDocs(query(collection(as("bob"), "cameraSources"), where("room", "==", "r1"))));
    await assertFails(getDoc(source(anon())));
  });
  it("no client writes camera sources", async () => {
    const written = { v: 1, room: "r1", name: "Evil", enabled: true, transport: "tcp", sealed: "v1.BBBB" };
    await assertFails(setDoc(source(as("bob"), "c2"), written));
    await assertFails(updateDoc(source(as("bob")), { sealed: "v1.BBBB" }));
    await assertFails(deleteDoc(source(as("bob"))));
  });
});
