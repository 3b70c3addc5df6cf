#!/usr/bin/env bash
# IP cameras in the web app: two Chromium users in a room whose owner adds an RTSP camera (a
# GStreamer RTSP server with Digest authentication, tests/rtsp/camera.py) through the meeting's
# "Cameras" dialog; both decode it (video at the camera's size, its PCMU sound), the camera is
# stopped for 10 s and comes back without anyone re-joining, a camera with a wrong password is
# shown as failed (the owner sees why) until its login is changed, and the camera's frames are timed from the camera's
# clock (stamped into each frame) to Chromium's decoder. Sidecar, PostgreSQL, one broadcast
# instance, the cameras and the browsers all run inside one network namespace.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$FIRESFU_ROOT"

# The sidecar seals camera credentials with this key and the broadcast opens them with it
# (scripts/test.sh exports one per run; on its own the script makes one).
if [ -z "${FIRESFU_CAMERA_KEY:-}" ]; then
  FIRESFU_CAMERA_KEY=$(openssl rand -base64 32)
fi
export FIRESFU_CAMERA_KEY

browser_setup cameras demo-cameras

start_app_sidecar cameras

start_app_broadcast

# The test starts, stops and restarts the camera itself (in its process group: stopped with it).
status=0
"${in_ns[@]}" env FIRESFU_CAMERA_SCRIPT="$FIRESFU_ROOT/tests/rtsp/camera.py" FIRESFU_BROADCAST_PID="$PID_BROADCAST" \
  node web/test/cameras.mjs "http://$sidecar/" "$artifacts" \
  >"$logs/cameras.json" 2>"$logs/cameras.log" || status=$?
cat "$logs/cameras.json"
[ "$status" -eq 0 ] || show_failure "$logs/cameras.log" "$logs/broadcast.log" "$logs/sidecar.log"
exit "$status"
