-- How many participants of a room may share a screen at once (0: any number); the room's
-- Firestore document carries it as `maxPresenters` for the broadcast instances.
ALTER TABLE rooms ADD COLUMN max_presenters integer NOT NULL DEFAULT 1
    CHECK (max_presenters BETWEEN 0 AND 16);
