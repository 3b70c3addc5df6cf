-- Users, their login sessions, images, rooms, and rooms created through the external bridge.
CREATE TABLE users (
    id            uuid PRIMARY KEY,
    username      text NOT NULL UNIQUE,
    password_hash text,                       -- NULL for bridge users (no password login)
    firebase_uid  text NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE auth_sessions (
    token_hash bytea PRIMARY KEY,             -- SHA-256 of the opaque access token
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX auth_sessions_user ON auth_sessions (user_id);

CREATE TABLE images (
    id           uuid PRIMARY KEY,
    owner_id     uuid REFERENCES users (id) ON DELETE CASCADE,   -- NULL for the seeded set
    name         text NOT NULL,
    content_type text NOT NULL,
    bytes        bytea NOT NULL,
    seeded       boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rooms (
    id         uuid PRIMARY KEY,
    owner_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       text NOT NULL,
    image_id   uuid REFERENCES images (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rooms_owner ON rooms (owner_id);

CREATE TABLE bridged_rooms (
    issuer      text NOT NULL,
    external_id text NOT NULL,
    room_id     uuid NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    PRIMARY KEY (issuer, external_id)
);
