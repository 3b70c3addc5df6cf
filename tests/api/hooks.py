"""schemathesis hooks (loaded through `hooks` in schemathesis.toml): WHIP's bodies are SDP text
(`application/sdp`, and `application/trickle-ice-sdpfrag` for trickle), sent like text/plain."""

import schemathesis

schemathesis.serializer.alias(["application/sdp", "application/trickle-ice-sdpfrag"], "text/plain")
