-- WHIP ingest sessions (docs/sidecar.md, "WHIP"): the session resource a POST created belongs to
-- the bearer token that created it. Only the token's SHA-256 is kept; PATCH and DELETE must
-- present the same token. `etag` names the session's ICE session (If-Match on PATCH) and
-- `ice_ufrag` the offer's ICE username fragment (a PATCH with another one is an ICE restart).
-- The session document itself is in Firestore (rooms/{room}/sessions/{session_id}); a row
-- outlives it only until the next reconciliation sweeps rows of ended sessions.
CREATE TABLE whip_sessions (
    room_id    uuid NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    session_id text NOT NULL,
    owner_hash bytea NOT NULL,
    etag       text NOT NULL,
    ice_ufrag  text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, session_id)
);
CREATE INDEX whip_sessions_created ON whip_sessions (created_at);
