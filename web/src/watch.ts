// Firestore listeners that come back: a listener that fails (e.g. permission denied until the
// server has made this user a member of the room) subscribes again after a pause.
import type { Unsubscribe } from "firebase/firestore";

export function watch(subscribe: (onError: (e: Error) => void) => Unsubscribe, label: string, retryMs = 1000): () => void {
  let current: Unsubscribe | null = null;
  let timer: ReturnType<typeof setTimeout> | null = null;
  let stopped = false;
  const start = () => {
    current = subscribe((e) => {
      console.warn(`firesfu: ${label} listener failed (${e.message}); listening again`);
      current = null;
      if (!stopped) timer = setTimeout(start, retryMs);
    });
  };
  start();
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    current?.();
  };
}
