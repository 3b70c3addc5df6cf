// What the browser tests and the browser benchmark share: a static server for the bundled
// page and Debian's Chromium (never a downloaded browser) with a fake camera and microphone.
import http from "node:http";
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

const files = { "/smoke.html": "text/html", "/smoke.js": "text/javascript" };

/** Serves web/dist on a free loopback port; returns {server, url}. */
export async function servePage() {
  const server = http.createServer((req, res) => {
    const type = files[req.url];
    if (!type) { res.writeHead(404).end(); return; }
    res.writeHead(200, { "content-type": type }).end(readFileSync(new URL(`../dist${req.url}`, import.meta.url)));
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { server, url: `http://127.0.0.1:${server.address().port}/smoke.html` };
}

/** `secureOrigins`: http origins to treat as secure (cameras need a secure context; loopback
 * is one, a namespace's address is not). `shareTab`: instead of the fake permission prompt
 * (whose screen share is Chromium's built-in test card), accept camera and microphone and
 * share the tab with this title (a page the test controls); `fakeDevices`: options of the fake
 * devices (e.g. "device-count=2"). */
export function launchChromium(secureOrigins = [], extraArgs = [], { shareTab = null, fakeDevices = null } = {}) {
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync",
      fakeDevices ? `--use-fake-device-for-media-stream=${fakeDevices}` : "--use-fake-device-for-media-stream",
      ...(shareTab
        ? ["--auto-accept-camera-and-microphone-capture", `--auto-select-tab-capture-source-by-title=${shareTab}`]
        : ["--use-fake-ui-for-media-stream"]),
      "--autoplay-policy=no-user-gesture-required",
      ...(secureOrigins.length ? [`--unsafely-treat-insecure-origin-as-secure=${secureOrigins.join(",")}`] : []),
      ...extraArgs],
  });
}
