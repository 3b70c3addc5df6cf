"""Microphones for the speaker tests: speech-like bursts (syllables of noise, 50–150 ms gaps, a
breath every few seconds) and silence, 20 s of 48 kHz mono each; Chromium loops them
(--use-file-for-fake-audio-capture). Usage: speech-wav.py SPEECH.wav SILENCE.wav"""
import math
import random
import struct
import sys
import wave

RATE, SECONDS = 48000, 20
random.seed(7)


def write(path, samples):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(b"".join(struct.pack("<h", int(max(-1, min(1, x)) * 32767)) for x in samples))


speech = []
while len(speech) < RATE * SECONDS:
    syllable = int(RATE * random.uniform(0.15, 0.3))
    speech += [0.35 * math.sin(math.pi * i / syllable) * random.uniform(-1, 1) for i in range(syllable)]
    speech += [0.0] * int(RATE * (random.uniform(0.05, 0.15) if random.random() > 0.1 else 0.4))
write(sys.argv[1], speech[: RATE * SECONDS])
write(sys.argv[2], [0.0] * RATE * SECONDS)
