-- IP cameras (RTSP) a room's owner adds to the room (docs/sidecar.md, "Cameras"). The URL and
-- the credentials exist only sealed: `sealed` is the `v1.` text of src/sealed.rs (AES-256-GCM
-- under FIRESFU_CAMERA_KEY, bound to the camera id), the same text Firestore's
-- cameraSources/{id} carries for the broadcast instance that pulls the camera.
CREATE TABLE cameras (
    id         uuid PRIMARY KEY,
    room_id    uuid NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    name       text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 80),
    sealed     text NOT NULL CHECK (sealed LIKE 'v1.%'),
    transport  text NOT NULL DEFAULT 'tcp' CHECK (transport IN ('tcp', 'udp')),
    enabled    boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cameras_room ON cameras (room_id, created_at);
