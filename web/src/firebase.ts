// Firestore as the signed-in user: a Firebase custom token in production, the emulator's mock
// user token in development (what the sidecar's join response says).
import { initializeApp, type FirebaseApp } from "firebase/app";
import { getAuth, signInWithCustomToken } from "firebase/auth";
import { connectFirestoreEmulator, initializeFirestore, type Firestore } from "firebase/firestore";
import type { Join, PublicConfig } from "./api";

const apps = new Map<string, Firestore>();

export async function firestoreFor(config: PublicConfig, join: Join): Promise<Firestore> {
  const uid = join.firebase.uid;
  const cached = apps.get(uid);
  if (cached) return cached;
  const app: FirebaseApp = initializeApp(
    { projectId: config.firebase.projectId, apiKey: config.firebase.apiKey, authDomain: config.firebase.authDomain ?? undefined },
    `firesfu-${uid}`,
  );
  const db = initializeFirestore(app, {});
  if (config.firestoreEmulator) {
    const [host, port] = config.firestoreEmulator.split(":");
    connectFirestoreEmulator(db, host, Number(port), { mockUserToken: { user_id: uid, sub: uid } });
  } else if (join.firebase.customToken) {
    await signInWithCustomToken(getAuth(app), join.firebase.customToken);
  }
  apps.set(uid, db);
  return db;
}
