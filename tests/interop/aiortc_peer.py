#!/usr/bin/env python3
"""A firesfu participant built on aiortc (Python), a WebRTC stack independent of the server's
(webrtc-rs) and of the str0m test peer.

It follows docs/signalling.md and nothing else: it writes a session document through the
Firestore emulator's REST API (as admin: `Authorization: Bearer owner`, std-lib urllib only),
polls that document every ~100 ms for the answer, publishes synthetic audio (Opus) and video
(VP8, encoded by aiortc), adds `recvonly` transceivers and re-offers when `wants` exceeds its
receive slots (one offer at a time), attributes what arrives to participants through `slots`
(mid -> participant), leaves by writing `state: "closed"` and prints one JSON line:

  {"received": {participant: {"video": decoded video frames, "audio": received audio frames}},
   "state": ..., "error": ..., "answeredRevision": n, ...}

"audio" counts audio RTP packets (one 20 ms frame each) that reached the slot's receiver;
decoded audio frames are reported separately in "decodedAudio" (the str0m peer sends tagged
payloads, not real Opus, so decoding them says little). "video" counts decoded VP8 frames.

aioice never gathers loopback addresses, so run this where a non-loopback address reaches the
server (the tests use a network namespace with a veth pair). `iceServers=[]` is always passed:
aiortc would otherwise contact Google's STUN server.

--fix-answer is a temporary client-side workaround for a server bug (candidates only in the
first BUNDLE m-section, no a=end-of-candidates); tests must not use it.
"""

import argparse
import asyncio
import datetime
import fractions
import json
import logging
import math
import signal
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Optional

import aioice.ice
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame

log = logging.getLogger("aiortc_peer")

POLL_SECONDS = 0.1


# ---------------------------------------------------------------------------------------------
# Firestore REST (emulator, admin)


def to_value(v: Any) -> dict:
    if v is None:
        return {"nullValue": None}
    if isinstance(v, bool):
        return {"booleanValue": v}
    if isinstance(v, int):
        return {"integerValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, str):
        return {"stringValue": v}
    if isinstance(v, datetime.datetime):
        return {"timestampValue": v.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")}
    if isinstance(v, dict):
        return {"mapValue": {"fields": {k: to_value(x) for k, x in v.items()}}}
    if isinstance(v, (list, tuple)):
        return {"arrayValue": {"values": [to_value(x) for x in v]}}
    raise TypeError(f"cannot store {type(v).__name__} in Firestore")


def from_value(v: dict) -> Any:
    if "nullValue" in v:
        return None
    if "booleanValue" in v:
        return v["booleanValue"]
    if "integerValue" in v:
        return int(v["integerValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "stringValue" in v:
        return v["stringValue"]
    if "timestampValue" in v:
        return v["timestampValue"]
    if "mapValue" in v:
        return {k: from_value(x) for k, x in v["mapValue"].get("fields", {}).items()}
    if "arrayValue" in v:
        return [from_value(x) for x in v["arrayValue"].get("values", [])]
    if "bytesValue" in v:
        return v["bytesValue"]
    if "referenceValue" in v:
        return v["referenceValue"]
    if "geoPointValue" in v:
        return v["geoPointValue"]
    return None


def as_int(v: Any) -> Optional[int]:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return None


class Firestore:
    def __init__(self, emulator: str, project: str):
        self.base = f"http://{emulator}/v1/projects/{urllib.parse.quote(project)}/databases/(default)/documents"

    def _request(self, method: str, path: str, query: list, body: Optional[dict]) -> Optional[dict]:
        url = f"{self.base}/{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Authorization", "Bearer owner")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            if e.code == 404 and method == "GET":
                return None
            raise RuntimeError(f"{method} {path}: HTTP {e.code}: {e.read()[:500].decode(errors='replace')}") from None

    def get(self, path: str) -> Optional[dict]:
        doc = self._request("GET", path, [], None)
        if doc is None:
            return None
        return {k: from_value(v) for k, v in doc.get("fields", {}).items()}

    def patch(self, path: str, fields: dict, mask: Optional[list] = None, must_not_exist: bool = False) -> None:
        query = [("updateMask.fieldPaths", f) for f in (mask or [])]
        if must_not_exist:
            query.append(("currentDocument.exists", "false"))
        self._request("PATCH", path, query, {"fields": {k: to_value(v) for k, v in fields.items()}})


# ---------------------------------------------------------------------------------------------
# Synthetic media


class ToneTrack(MediaStreamTrack):
    """A 400 Hz tone, 48 kHz mono s16, 20 ms frames (aiortc encodes it as Opus)."""

    kind = "audio"
    RATE = 48000
    SAMPLES = 960  # 20 ms

    def __init__(self) -> None:
        super().__init__()
        period = self.RATE // 400  # 120 samples: a 20 ms frame holds exactly 8 periods
        one = [int(8000 * math.sin(2 * math.pi * i / period)) for i in range(period)]
        self._pcm = struct.pack(f"<{self.SAMPLES}h", *(one * (self.SAMPLES // period)))
        self._start: Optional[float] = None
        self._pts = 0

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.time()
        else:
            self._pts += self.SAMPLES
            await asyncio.sleep(max(0.0, self._start + self._pts / self.RATE - time.time()))
        frame = AudioFrame(format="s16", layout="mono", samples=self.SAMPLES)
        frame.planes[0].update(self._pcm)
        frame.pts = self._pts
        frame.sample_rate = self.RATE
        frame.time_base = fractions.Fraction(1, self.RATE)
        return frame


class PatternTrack(MediaStreamTrack):
    """320x240 frames at 30 fps with a moving bar (aiortc encodes them as VP8)."""

    kind = "video"
    WIDTH, HEIGHT, FPS, CLOCK = 320, 240, 30, 90000

    def __init__(self) -> None:
        super().__init__()
        self._start: Optional[float] = None
        self._n = 0

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.time()
        else:
            self._n += 1
            await asyncio.sleep(max(0.0, self._start + self._n / self.FPS - time.time()))
        frame = VideoFrame(width=self.WIDTH, height=self.HEIGHT, format="yuv420p")
        y = frame.planes[0]
        bar = (self._n * 4) % self.WIDTH
        row = bytearray([60 + (self._n % 60)]) * y.line_size
        row[bar : bar + 24] = bytes([235]) * len(row[bar : bar + 24])
        y.update(bytes(row) * self.HEIGHT)
        for p, value in ((frame.planes[1], 90 + self._n % 40), (frame.planes[2], 160)):
            p.update(bytes([value]) * p.buffer_size)
        frame.pts = self._n * (self.CLOCK // self.FPS)
        frame.time_base = fractions.Fraction(1, self.CLOCK)
        return frame


# ---------------------------------------------------------------------------------------------
# SDP helpers


def describe_sdp(sdp: str) -> list:
    """Per m-section: mid, kind, port, direction, candidates (component numbers), end-of-candidates."""
    out = []
    cur: Optional[dict] = None
    for line in sdp.splitlines():
        if line.startswith("m="):
            parts = line[2:].split()
            cur = {"kind": parts[0], "port": int(parts[1]), "mid": None, "dir": None, "candidates": [], "eoc": False}
            out.append(cur)
        elif cur is None:
            continue
        elif line.startswith("a=mid:"):
            cur["mid"] = line[6:]
        elif line in ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"):
            cur["dir"] = line[2:]
        elif line.startswith("a=candidate:"):
            f = line[12:].split()
            cur["candidates"].append(f"c{f[1]} {f[2]} {f[4]}:{f[5]}" if len(f) > 5 else line)
        elif line == "a=end-of-candidates":
            cur["eoc"] = True
    return out


def fix_answer(sdp: str) -> str:
    """Temporary workaround for the server's answer: copy the component-1 candidate lines into
    every m-section with a non-zero port and end each with a=end-of-candidates."""
    sections: list = [[]]
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if line.startswith("m="):
            sections.append([])
        if line:
            sections[-1].append(line)
    candidates = []
    for section in sections:
        for line in section:
            if line.startswith("a=candidate:"):
                f = line[12:].split()
                if len(f) > 1 and f[1] == "1" and line not in candidates:
                    candidates.append(line)
    for section in sections[1:]:
        if section[0].split()[1] == "0":
            continue
        have = set(section)
        section.extend(c for c in candidates if c not in have)
        if "a=end-of-candidates" not in have:
            section.append("a=end-of-candidates")
    return "\r\n".join(line for section in sections for line in section) + "\r\n"


def vp8_only(kind: str) -> list:
    caps = RTCRtpSender.getCapabilities(kind).codecs
    if kind != "video":
        return [c for c in caps if c.mimeType.lower() == "audio/opus"]
    return [c for c in caps if c.mimeType.lower() in ("video/vp8", "video/rtx")]


# ---------------------------------------------------------------------------------------------
# The participant


class Participant:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.db = Firestore(args.emulator, args.project)
        self.session = args.session or args.name
        self.path = f"rooms/{urllib.parse.quote(args.room, safe='')}/sessions/{urllib.parse.quote(self.session, safe='')}"
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.revision = 0
        self.pending: Optional[tuple] = None  # (revision, written_at)
        self.answered_revision = 0
        self.answer_latency_ms: list = []
        self.reoffers_blocked = False
        self.doc: dict = {}
        self.state: Optional[str] = None
        self.error: Any = None
        self.slots: dict = {}
        self.received: dict = {}  # participant -> {"video": decoded frames, "audio": packets}
        self.decoded_audio: dict = {}
        self.rtp: dict = {}  # participant -> {"audio": packets, "video": packets}
        self.unattributed = {"audio": 0, "video": 0}
        self.consumers: list = []
        self.hooked: set = set()
        self.answers: list = []
        self.connected_at: Optional[float] = None
        self.start = time.monotonic()

    # -- counting --------------------------------------------------------------------------

    def who(self, mid: Optional[str]) -> Optional[str]:
        slot = self.slots.get(mid) if mid is not None else None
        return slot.get("participant") if isinstance(slot, dict) else None

    def count(self, table: dict, mid: Optional[str], kind: str) -> None:
        who = self.who(mid)
        if who is None:
            self.unattributed[kind] += 1
            return
        entry = table.setdefault(who, {"video": 0, "audio": 0})
        entry[kind] += 1

    def hook_receivers(self) -> None:
        """Count RTP packets per receive slot (aiortc has no public per-packet hook; its
        inbound-rtp stats keep only the latest SSRC of a receiver, and slots change SSRC when
        they are reused)."""
        for t in self.pc.getTransceivers():
            r = t.receiver
            if id(r) in self.hooked or not hasattr(r, "_handle_rtp_packet"):
                continue
            self.hooked.add(id(r))
            original = r._handle_rtp_packet

            async def handle(packet, arrival_time_ms, _t=t, _orig=original):
                self.count(self.rtp, _t.mid, _t.kind)
                if _t.kind == "audio":
                    self.count(self.received, _t.mid, "audio")
                await _orig(packet, arrival_time_ms)

            r._handle_rtp_packet = handle

    async def consume(self, track: MediaStreamTrack) -> None:
        transceiver = next((t for t in self.pc.getTransceivers() if t.receiver.track is track), None)
        mid = transceiver.mid if transceiver else None
        log.info("receiving %s on mid %s", track.kind, mid)
        while True:
            try:
                await track.recv()
            except MediaStreamError:
                return
            if track.kind == "video":
                self.count(self.received, mid, "video")
            else:
                self.count(self.decoded_audio, mid, "audio")
                if transceiver is None or id(transceiver.receiver) not in self.hooked:
                    # No packet hook in this aiortc version: count decoded frames instead.
                    self.count(self.received, mid, "audio")

    # -- signalling ------------------------------------------------------------------------

    async def make_offer(self) -> str:
        offer = await self.pc.createOffer()
        await self.pc.setLocalDescription(offer)  # aiortc gathers all candidates here
        self.hook_receivers()
        sdp = self.pc.localDescription.sdp
        if self.args.log_sdp:
            log.info("offer revision %d:\n%s", self.revision + 1, sdp)
        return sdp

    def add_slots(self, audio: int, video: int) -> None:
        for kind, n in (("audio", audio), ("video", video)):
            for _ in range(n):
                t = self.pc.addTransceiver(kind, direction="recvonly")
                t.setCodecPreferences(vp8_only(kind))

    def slot_counts(self) -> tuple:
        a = v = 0
        for t in self.pc.getTransceivers():
            if t.direction == "recvonly":
                if t.kind == "audio":
                    a += 1
                else:
                    v += 1
        return a, v

    async def join(self) -> None:
        for kind, track in (("audio", ToneTrack()), ("video", PatternTrack())):
            t = self.pc.addTransceiver(track, direction="sendonly")
            t.setCodecPreferences(vp8_only(kind))
        self.add_slots(self.args.recv_audio, self.args.recv_video)

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self.consumers.append(asyncio.ensure_future(self.consume(track)))

        @self.pc.on("connectionstatechange")
        def on_state() -> None:
            log.info("connection state: %s (ice %s)", self.pc.connectionState, self.pc.iceConnectionState)
            if self.pc.connectionState == "connected" and self.connected_at is None:
                self.connected_at = time.monotonic()

        sdp = await self.make_offer()
        now = datetime.datetime.now(datetime.timezone.utc)
        doc = {
            "v": 1,
            "displayName": self.args.name,
            "token": None,
            "offer": {"sdp": sdp, "revision": 1},
            "state": "offered",
            "createdAt": now,
            "expiresAt": now + datetime.timedelta(hours=1),
        }
        await asyncio.to_thread(self.db.patch, self.path, doc, None, True)
        self.revision = 1
        self.pending = (1, time.monotonic())
        log.info("offer 1 written (%s)", self.path)

    async def on_document(self, doc: Optional[dict]) -> bool:
        """Acts on one read of the session document; False when the session is over."""
        if doc is None:
            self.error = self.error or {"code": "deleted", "message": "the session document vanished"}
            return False
        self.doc = doc
        state = doc.get("state")
        if state != self.state:
            log.info("document state: %s", state)
        self.state = state
        self.error = doc.get("error")
        if isinstance(doc.get("slots"), dict):
            self.slots = doc["slots"]

        if self.pending is not None:
            revision, written = self.pending
            answer = doc.get("answer") or {}
            if as_int(answer.get("revision")) == revision and state in ("answered", "connected"):
                sdp = answer.get("sdp") or ""
                self.answers.append({"revision": revision, "sections": describe_sdp(sdp)})
                if self.args.log_sdp:
                    log.info("answer revision %d:\n%s", revision, sdp)
                log.info("answer %d sections: %s", revision, json.dumps(describe_sdp(sdp)))
                if self.args.fix_answer:
                    sdp = fix_answer(sdp)
                    log.info("answer %d after --fix-answer: %s", revision, json.dumps(describe_sdp(sdp)))
                await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
                self.hook_receivers()
                self.pending = None
                self.answered_revision = revision
                self.answer_latency_ms.append(round((time.monotonic() - written) * 1000, 1))
                log.info("answer %d applied", revision)
            else:
                err = doc.get("error") or {}
                if as_int(err.get("revision")) == revision and state not in ("offered", "answering"):
                    # aiortc cannot roll back a local offer: stop re-offering, keep the session.
                    log.warning("offer %d refused: %s", revision, err)
                    self.pending = None
                    self.reoffers_blocked = True

        if state in ("failed", "closed"):
            return False

        if self.pending is None and not self.reoffers_blocked and state in ("answered", "connected"):
            wants = doc.get("wants") or {}
            have_a, have_v = self.slot_counts()
            need_a = max(0, (as_int(wants.get("audio")) or 0) - have_a)
            need_v = max(0, (as_int(wants.get("video")) or 0) - have_v)
            if need_a or need_v:
                self.add_slots(need_a, need_v)
                sdp = await self.make_offer()
                revision = self.revision + 1
                await asyncio.to_thread(
                    self.db.patch,
                    self.path,
                    {"offer": {"sdp": sdp, "revision": revision}, "state": "offered"},
                    ["offer", "state"],
                )
                self.revision = revision
                self.pending = (revision, time.monotonic())
                log.info("re-offer %d written (+%d audio, +%d video slots)", revision, need_a, need_v)
        return True

    async def run(self, stop: asyncio.Event) -> None:
        await self.join()
        deadline = self.start + self.args.seconds
        while not stop.is_set() and time.monotonic() < deadline:
            doc = await asyncio.to_thread(self.db.get, self.path)
            if not await self.on_document(doc):
                break
            try:
                await asyncio.wait_for(stop.wait(), POLL_SECONDS)
            except asyncio.TimeoutError:
                pass

    async def leave(self) -> None:
        if self.state not in ("closed", "failed") and self.revision > 0:
            try:
                await asyncio.to_thread(self.db.patch, self.path, {"state": "closed"}, ["state"])
            except Exception as e:  # noqa: BLE001 - report, do not hide the result
                log.warning("could not write state closed: %s", e)
        await self.pc.close()
        for c in self.consumers:
            c.cancel()

    def report(self, failure: Optional[str]) -> dict:
        return {
            "received": self.received,
            "state": self.state,
            "error": failure or self.error,
            "answeredRevision": self.answered_revision,
            "revision": self.revision,
            "answerLatencyMs": self.answer_latency_ms,
            "connectionState": self.pc.connectionState,
            "connectedAfterMs": None if self.connected_at is None else round((self.connected_at - self.start) * 1000),
            "slots": {m: self.who(m) for m in self.slots},
            "decodedAudio": {k: v["audio"] for k, v in self.decoded_audio.items()},
            "rtp": self.rtp,
            "unattributed": self.unattributed,
            "fixAnswer": self.args.fix_answer,
            "answers": self.answers,
        }


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--emulator", required=True, help="Firestore emulator host:port")
    p.add_argument("--project", required=True)
    p.add_argument("--room", required=True)
    p.add_argument("--name", required=True, help="display name; also the session id unless --session")
    p.add_argument("--session")
    p.add_argument("--seconds", type=float, default=10.0, help="leave after this many seconds")
    p.add_argument("--recv-audio", type=int, default=0, help="recvonly audio transceivers in the first offer")
    p.add_argument("--recv-video", type=int, default=0, help="recvonly video transceivers in the first offer")
    p.add_argument("--bind-ip", help="gather host candidates on this address only (default: every non-loopback one)")
    p.add_argument("--create-room", action="store_true", help="create rooms/{room} first")
    p.add_argument("--fix-answer", action="store_true", help="TEMPORARY: repair the server's answer candidates")
    p.add_argument("--log-sdp", action="store_true", help="log offers and answers on stderr")
    p.add_argument("--verbose", action="store_true", help="aiortc/aioice debug logs")
    args = p.parse_args()

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s.%(msecs)03d %(name)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    if not args.verbose:
        for name in ("aiortc", "aioice"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if args.bind_ip:
        ip = args.bind_ip
        aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: [ip]

    if args.create_room:
        Firestore(args.emulator, args.project).patch(
            f"rooms/{urllib.parse.quote(args.room, safe='')}", {"name": args.room}
        )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    peer = Participant(args)
    failure = None
    try:
        await peer.run(stop)
    except Exception as e:  # noqa: BLE001 - the JSON line must come out whatever happened
        log.exception("peer failed")
        failure = {"code": "aiortc-peer", "message": f"{type(e).__name__}: {e}"}
    try:
        await asyncio.wait_for(peer.leave(), 5)
    except Exception as e:  # noqa: BLE001
        log.warning("leaving failed: %s", e)
    print(json.dumps(peer.report(failure)), flush=True)
    return 1 if failure else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
