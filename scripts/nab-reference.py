#!/usr/bin/env python3
"""Rescore published NAB detectors (and optionally gatewatch detections) on a subset of NAB,
with NAB's own scoring (a port of nab/sweeper.py + nab/scorer.py + runner.normalize at
numenta/NAB ea702d75cc2258d9d7dd35ca8e5e2539d71f3140, Copyright 2014-2024 Numenta Inc., see
its LICENSE.txt), three ways:

  all      every labelled window, as NAB does;
  rise/FP  "drop" windows removed from the labels: no TP, no FN, and a detection inside one
           is an ordinary false positive (exactly NAB with those windows deleted from
           combined_windows.json);
  rise/ign "drop" windows removed from the labels and the rows inside them not scored at all
           (a detection there is neither TP nor FP).

A window is a drop by gatewatch's tests/nab_score.rs `is_drop`: its largest fall below the
median of the 288 rows (one day) before it exceeds its largest rise above that median.

usage:
  python3 nab_reference.py NAB_CHECKOUT DATA_DIR [--gatewatch DIR] [--detectors a,b,c]
                           [--profile standard] [--per-file] [--csv OUT.csv]

  NAB_CHECKOUT  a numenta/NAB tree: results/<det>/<group>/<det>_<series>.csv and
                config/thresholds.json (config/profiles.json is read from DATA_DIR if present,
                else from NAB_CHECKOUT).
  DATA_DIR      data/<group>/*.csv (the series to score; every group found is used) and
                labels/combined_windows.json.
  --gatewatch   a directory of <series>.csv (or <group>/<series>.csv) files with columns
                timestamp,flag (0/1), one per series, exactly the rows of the NAB csv; scored
                as a detector named "gatewatch" (threshold: flag >= 0.5).

Only the standard library is needed.

Checked against NAB's own code (Python 3.11, pandas 1.5.3) on the 24 realKnownCause and
realAWSCloudwatch series: every (detector, file) score and false-positive count agrees, for
the labels as they are and with the drop windows deleted from them; on the whole corpus NAB's
code gives back every standard score in its results/final_results.json.

gatewatch's own detections, scored by tests/nab_score.rs, are written for this script by
  GATEWATCH_NAB_FLAGS=/tmp/flags scripts/nab-score.sh
  python3 scripts/nab-reference.py NAB_CHECKOUT ../shared/data/nab --gatewatch /tmp/flags/n12
and the two scorers give the same figures.
"""
import argparse
import csv
import datetime
import json
import math
import os
import sys

DEFAULT_DETECTORS = [
    "numenta", "numentaTM", "htmjava", "contextOSE", "ARTime", "knncad", "relativeEntropy",
    "twitterADVec", "bayesChangePt", "windowedGaussian", "earthgeckoSkyline", "skyline",
    "randomCutForest", "expose", "random", "null",
]
PROBATION_PERCENT = 0.15   # runner.py: self.probationaryPercent
DAY_ROWS = 288             # tests/nab_score.rs is_drop: rows[a.saturating_sub(288)..a]


# ---------------------------------------------------------------- NAB sweeper port

def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def scaled_sigmoid(rel):
    """nab/sweeper.py scaledSigmoid."""
    if rel > 3.0:
        return -1.0
    return 2 * sigmoid(-5 * rel) - 1.0


def probation_length(n):
    """nab/sweeper.py Sweeper._getProbationaryLength: min(floor(0.15 n), 0.15 * 5000)."""
    return min(math.floor(PROBATION_PERCENT * n), PROBATION_PERCENT * 5000)


def sweep_points(n, windows, cost):
    """Sweeper.calcSweepScore: per row, (weighted score if detected, window index or None,
    probationary?). `windows` are (left index, right index) pairs, sorted, non-overlapping."""
    max_tp = scaled_sigmoid(-1.0)
    prob = probation_length(n)
    out = []
    wl = list(windows)
    cur = None          # (left, right) of the window we are in
    cur_idx = None
    k = 0
    prev_right = prev_width = None
    for i in range(n):
        if wl and i == wl[0][0]:
            cur = wl.pop(0)
            cur_idx = k
            k += 1
        if cur is not None:
            width = float(cur[1] - cur[0] + 1)
            pos = -(cur[1] - i + 1) / width
            weighted = scaled_sigmoid(pos) * cost["tpWeight"] / max_tp
            win = cur_idx
        else:
            if prev_right is None:
                unweighted = -1.0
            else:
                unweighted = scaled_sigmoid(abs(prev_right - i) / float(prev_width - 1))
            weighted = unweighted * cost["fpWeight"]
            win = None
        out.append((weighted, win, i < prob))
        if cur is not None and i == cur[1]:
            prev_right = i
            prev_width = float(cur[1] - cur[0] + 1)
            cur = None
            cur_idx = None
    return out


def score_file(flags, windows, cost, ignore=()):
    """Score of one file for the rows flagged in `flags` (bools), as Sweeper.scoreDataSet at the
    threshold. `ignore`: (left, right) index ranges whose rows are not scored (variant rise/ign).
    Returns dict(score, windows (scored), caught, fp_rows, tp_rows)."""
    n = len(flags)
    pts = sweep_points(n, windows, cost)
    masked = [False] * n
    for a, b in ignore:
        for i in range(a, b + 1):
            masked[i] = True
    # scoreParts: every window holding at least one non-probationary row starts at -fnWeight
    parts = {}
    for (w_score, win, prob), m in zip(pts, masked):
        if not prob and win is not None:
            parts[win] = -cost["fnWeight"]
    fp = 0.0
    fp_rows = tp_rows = 0
    caught = set()
    for i, ((w_score, win, prob), m) in enumerate(zip(pts, masked)):
        if prob or m or not flags[i]:
            continue
        if win is None:
            fp += w_score
            fp_rows += 1
        else:
            parts[win] = max(parts[win], w_score)
            tp_rows += 1
            caught.add(win)
    return {
        "score": fp + sum(parts.values()),
        "windows": len(parts),
        "caught": len(caught),
        "fp_rows": fp_rows,
        "tp_rows": tp_rows,
    }


# ---------------------------------------------------------------- data

def parse_ts(s):
    s = s.strip()
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.datetime.strptime(s, fmt)
        except ValueError:
            pass
    raise ValueError("bad timestamp %r" % s)


def read_csv_cols(path):
    with open(path, newline="") as f:
        r = csv.reader(f)
        header = next(r)
        rows = [row for row in r if row]
    return header, rows


def load_corpus(data_dir):
    with open(os.path.join(data_dir, "labels", "combined_windows.json")) as f:
        all_windows = json.load(f)
    corpus = []
    ddir = os.path.join(data_dir, "data")
    for group in sorted(os.listdir(ddir)):
        gdir = os.path.join(ddir, group)
        if not os.path.isdir(gdir):
            continue
        for name in sorted(os.listdir(gdir)):
            if not name.endswith(".csv"):
                continue
            rel = group + "/" + name
            header, rows = read_csv_cols(os.path.join(gdir, name))
            ts = [parse_ts(r[0]) for r in rows]
            vals = [float(r[1]) for r in rows]
            index = {t: i for i, t in enumerate(ts)}
            wins = []
            for a, b in all_windows.get(rel, []):
                ta, tb = parse_ts(a), parse_ts(b)
                if ta not in index or tb not in index:
                    raise SystemExit("%s: window bound %s/%s is not a row (NAB requires exact)" % (rel, a, b))
                wins.append({"start": a, "end": b, "lo": index[ta], "hi": index[tb],
                             "drop": is_drop(ts, vals, ta, tb)})
            wins.sort(key=lambda w: w["lo"])
            corpus.append({"rel": rel, "group": group, "name": name, "ts": ts, "vals": vals,
                           "windows": wins})
    return corpus


def is_drop(ts, vals, ta, tb):
    """Port of gatewatch tests/nab_score.rs is_drop (exactly):
    a = first row with ts >= start, b = first row with ts > end; before = rows[max(a-288,0)..a];
    med = sorted(before)[len/2]; up = max(v - med), down = max(med - v) over rows[a..b];
    drop iff down > up."""
    a = next((i for i, t in enumerate(ts) if not t < ta), len(ts))
    b = next((i for i, t in enumerate(ts) if not t <= tb), len(ts))
    before = sorted(vals[max(a - DAY_ROWS, 0):a])
    if not before or a >= b:
        return False
    med = before[len(before) // 2]
    inside = vals[a:b]
    up = max(v - med for v in inside)
    down = max(med - v for v in inside)
    return down > up


def detector_flags(nab_dir, det, series, threshold):
    path = os.path.join(nab_dir, "results", det, series["group"], det + "_" + series["name"])
    header, rows = read_csv_cols(path)
    ci = header.index("anomaly_score")
    if len(rows) != len(series["ts"]):
        raise SystemExit("%s: %d rows, data has %d" % (path, len(rows), len(series["ts"])))
    bad = sum(1 for r, t in zip(rows, series["ts"]) if parse_ts(r[0]) != t)
    if bad:
        # NAB (scorer.scoreCorpus) pairs the data file's timestamps with the results' anomaly
        # scores by position and never compares them; so do we, with a warning.
        print("warning: %s: %d rows whose timestamp differs from the data's (scored by position, as NAB does)"
              % (path, bad), file=sys.stderr)
    return [float(r[ci]) >= threshold for r in rows]


def gatewatch_flags(gw_dir, series):
    for p in (os.path.join(gw_dir, series["name"]), os.path.join(gw_dir, series["group"], series["name"])):
        if os.path.exists(p):
            break
    else:
        raise SystemExit("gatewatch: no %s under %s" % (series["name"], gw_dir))
    header, rows = read_csv_cols(p)
    ci = header.index("flag") if "flag" in header else 1
    if len(rows) != len(series["ts"]):
        raise SystemExit("%s: %d rows, data has %d" % (p, len(rows), len(series["ts"])))
    for r, t in zip(rows, series["ts"]):
        if parse_ts(r[0]) != t:
            raise SystemExit("%s: timestamp %s does not match the data" % (p, r[0]))
    return [float(r[ci]) >= 0.5 for r in rows]


# ---------------------------------------------------------------- scoring variants

VARIANTS = ("all", "rise/FP", "rise/ign")


def score_variant(corpus, flags_by_file, cost, variant):
    tot = {"score": 0.0, "windows": 0, "caught": 0, "fp_rows": 0, "tp_rows": 0}
    per_file = {}
    for s in corpus:
        if variant == "all":
            wins = [(w["lo"], w["hi"]) for w in s["windows"]]
            ign = []
        else:
            wins = [(w["lo"], w["hi"]) for w in s["windows"] if not w["drop"]]
            ign = [(w["lo"], w["hi"]) for w in s["windows"] if w["drop"]] if variant == "rise/ign" else []
        r = score_file(flags_by_file[s["rel"]], wins, cost, ign)
        per_file[s["rel"]] = r
        for k in tot:
            tot[k] += r[k]
    return tot, per_file


def n_windows(corpus, variant):
    if variant == "all":
        return sum(len(s["windows"]) for s in corpus)
    return sum(1 for s in corpus for w in s["windows"] if not w["drop"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("nab_dir")
    ap.add_argument("data_dir")
    ap.add_argument("--gatewatch", help="directory of <series>.csv with timestamp,flag")
    ap.add_argument("--detectors", default=",".join(DEFAULT_DETECTORS))
    ap.add_argument("--profile", default="standard")
    ap.add_argument("--per-file", action="store_true", help="print each file's score per detector")
    ap.add_argument("--csv", help="also write the summary table to this CSV file")
    args = ap.parse_args()

    prof_path = os.path.join(args.data_dir, "config", "profiles.json")
    if not os.path.exists(prof_path):
        prof_path = os.path.join(args.nab_dir, "config", "profiles.json")
    with open(prof_path) as f:
        cost = json.load(f)[args.profile]["CostMatrix"]
    with open(os.path.join(args.nab_dir, "config", "thresholds.json")) as f:
        thresholds = json.load(f)

    corpus = load_corpus(args.data_dir)
    nwin = n_windows(corpus, "all")
    nrise = n_windows(corpus, "rise/FP")
    print("%d series, %d labelled windows, %d drops, %d rises; profile %s %s"
          % (len(corpus), nwin, nwin - nrise, nrise, args.profile, json.dumps(cost)))
    print("probation: min(floor(0.15 n), 750) rows; a detection is anomaly_score >= the detector's "
          "'%s' threshold in config/thresholds.json" % args.profile)

    print("\nDrop windows (gatewatch is_drop):")
    for s in corpus:
        for w in s["windows"]:
            if w["drop"]:
                print("  %-58s %s .. %s" % (s["rel"], w["start"][:19], w["end"][:19]))

    dets = [d for d in args.detectors.split(",") if d]
    entries = []   # (name, threshold, flags_by_file)
    for d in dets:
        if not os.path.isdir(os.path.join(args.nab_dir, "results", d)):
            print("(no results for %s, skipped)" % d, file=sys.stderr)
            continue
        th = thresholds[d][args.profile]["threshold"]
        entries.append((d, th, {s["rel"]: detector_flags(args.nab_dir, d, s, th) for s in corpus}))
    if args.gatewatch:
        entries.append(("gatewatch", 0.5, {s["rel"]: gatewatch_flags(args.gatewatch, s) for s in corpus}))
    # the null detector (never detects) and the perfect one (tpWeight per window), as NAB
    # normalizes: 100 * (raw - null) / (perfect - null); perfect = windows * tpWeight
    # (runner.normalize counts every window in the labels file).
    never = {s["rel"]: [False] * len(s["ts"]) for s in corpus}
    base = {v: score_variant(corpus, never, cost, v)[0]["score"] for v in VARIANTS}
    perfect = {v: n_windows(corpus, v) * cost["tpWeight"] for v in VARIANTS}

    def norm(raw, v):
        return 100.0 * (raw - base[v]) / (perfect[v] - base[v])

    print("\nnull raw score: all %.3f, rises %.3f; perfect: all %.1f, rises %.1f"
          % (base["all"], base["rise/FP"], perfect["all"], perfect["rise/FP"]))

    hdr = ("detector", "threshold", "all", "rise/FP", "rise/ign", "raw(all)",
           "caught all", "caught rise", "caught drop", "det. outside", "det. in drops")
    print("\nNormalized NAB %s score on these %d series (null = 0, perfect = 100)" % (args.profile, len(corpus)))
    print("  all      = every labelled window (NAB as is)")
    print("  rise/FP  = drop windows removed from the labels, detections in them are false positives")
    print("  rise/ign = drop windows removed from the labels, rows in them not scored")
    print("  caught   = windows with at least one detection after probation (of %d all / %d rise / %d drop)"
          % (nwin, nrise, nwin - nrise))
    print("  det. outside = rows detected after probation outside every labelled window; "
          "det. in drops = rows detected inside drop windows\n")
    fmt = "%-18s %9s %7s %8s %8s %9s %10s %11s %11s %12s %13s"
    print(fmt % hdr)
    table = []
    for name, th, flags in entries:
        res = {v: score_variant(corpus, flags, cost, v) for v in VARIANTS}
        a, rf, ri = res["all"][0], res["rise/FP"][0], res["rise/ign"][0]
        caught_drop = a["caught"] - ri["caught"]
        in_drops = rf["fp_rows"] - a["fp_rows"]
        row = (name, "%.4g" % th, "%.2f" % norm(a["score"], "all"), "%.2f" % norm(rf["score"], "rise/FP"),
               "%.2f" % norm(ri["score"], "rise/ign"), "%.3f" % a["score"],
               "%d/%d" % (a["caught"], a["windows"]), "%d/%d" % (ri["caught"], ri["windows"]),
               "%d/%d" % (caught_drop, a["windows"] - ri["windows"]), a["fp_rows"], in_drops)
        table.append(row)
        print(fmt % row)
        if args.per_file:
            for s in corpus:
                pf = res["all"][1][s["rel"]]
                print("    %-58s score %8.4f  windows %d caught %d fp rows %d"
                      % (s["rel"], pf["score"], pf["windows"], pf["caught"], pf["fp_rows"]))
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(hdr)
            w.writerows(table)


if __name__ == "__main__":
    main()
