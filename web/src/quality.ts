// Connection quality, as the room shows it: what this browser measures (getStats) combined
// with what the server reports for each participant (the roster's `quality`). Pure.

export type Grade = "good" | "fair" | "poor" | "unknown";

export interface Measured {
  /** Round-trip time to the server, milliseconds. */
  rttMs: number | null;
  /** Fraction of packets lost, 0..1. */
  loss: number | null;
  /** Interarrival jitter, milliseconds. */
  jitterMs: number | null;
}

// The usual thresholds for interactive media (ITU-T G.114 puts the comfortable mouth-to-ear
// limit near 150 ms one way; video codecs conceal a couple of percent of loss).
const FAIR = { rttMs: 300, loss: 0.02, jitterMs: 30 };
const POOR = { rttMs: 600, loss: 0.08, jitterMs: 80 };

export function grade(m: Measured): Grade {
  const values = [m.rttMs, m.loss, m.jitterMs];
  if (values.every((v) => v === null)) return "unknown";
  const over = (limits: typeof FAIR) =>
    (m.rttMs ?? 0) > limits.rttMs || (m.loss ?? 0) > limits.loss || (m.jitterMs ?? 0) > limits.jitterMs;
  if (over(POOR)) return "poor";
  if (over(FAIR)) return "fair";
  return "good";
}

/** The worse reading of each measure, so either side's trouble shows. */
export function combine(a: Measured, b: Measured): Measured {
  const worse = (x: number | null, y: number | null) => (x === null ? y : y === null ? x : Math.max(x, y));
  return { rttMs: worse(a.rttMs, b.rttMs), loss: worse(a.loss, b.loss), jitterMs: worse(a.jitterMs, b.jitterMs) };
}

interface StatsLike {
  type: string;
  [key: string]: unknown;
}

/** This browser's link to the server: the selected candidate pair's RTT and what it sends. */
export function ownLink(stats: Iterable<StatsLike>): Measured {
  let rttMs: number | null = null;
  let loss: number | null = null;
  let jitterMs: number | null = null;
  for (const s of stats) {
    if (s.type === "candidate-pair" && s.nominated && typeof s.currentRoundTripTime === "number") {
      rttMs = s.currentRoundTripTime * 1000;
    }
    if (s.type === "remote-inbound-rtp") {
      if (typeof s.fractionLost === "number") loss = Math.max(loss ?? 0, s.fractionLost);
      if (typeof s.jitter === "number") jitterMs = Math.max(jitterMs ?? 0, s.jitter * 1000);
      if (rttMs === null && typeof s.roundTripTime === "number") rttMs = s.roundTripTime * 1000;
    }
  }
  return { rttMs, loss, jitterMs };
}

/** What arrives on the given receive slots (one participant's tracks): loss and jitter. */
export function received(stats: Iterable<StatsLike>, mids: Set<string>): Measured {
  let got = 0;
  let lost = 0;
  let jitterMs: number | null = null;
  for (const s of stats) {
    if (s.type !== "inbound-rtp" || typeof s.mid !== "string" || !mids.has(s.mid)) continue;
    got += Number(s.packetsReceived ?? 0);
    lost += Math.max(0, Number(s.packetsLost ?? 0));
    if (typeof s.jitter === "number") jitterMs = Math.max(jitterMs ?? 0, s.jitter * 1000);
  }
  return { rttMs: null, loss: got + lost > 0 ? lost / (got + lost) : null, jitterMs };
}
