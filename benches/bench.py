#!/usr/bin/env python3
"""Helpers for benches/load.sh (standard library only).

Subcommands:
  freeports HOST... --count N --lo L --hi H   print a base port P such that P..P+N-1 are free
                                              on every HOST
  burst HOST PORT PATH N                      wait for a line on stdin, then open N connections
                                              at once, each sending one `Connection: close`
                                              GET; print JSON {max_ms, p50_ms, ok, failed}
  idle HOST PORT N                            open N TCP connections and hold them; print
                                              "opened N" when done, close them all on a line
                                              (or EOF) on stdin, then print "closed"
  wrk FILE                                    parse wrk output: JSON {rps, requests, errors}
  oha FILE                                    parse oha JSON output: JSON {p50_ms, p99_ms, ...}
  iperf FILE                                  parse iperf3 -J output: JSON {gbps}
  report RESULTS.tsv OUT.json                 print the tables and the summary; write JSON
"""

import asyncio
import json
import re
import socket
import statistics
import sys
import time


def freeports(argv):
    hosts, count, lo, hi = [], 1, 20000, 30000
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--count":
            count = int(argv[i + 1]); i += 2; continue
        if a == "--lo":
            lo = int(argv[i + 1]); i += 2; continue
        if a == "--hi":
            hi = int(argv[i + 1]); i += 2; continue
        hosts.append(a); i += 1
    import random
    bases = list(range(lo, hi - count, count))
    random.shuffle(bases)
    for base in bases:
        ok = True
        for host in hosts:
            for p in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    s.bind((host, p))
                except OSError:
                    ok = False
                finally:
                    s.close()
                if not ok:
                    break
            if not ok:
                break
        if ok:
            print(base)
            return 0
    print("no free port range", file=sys.stderr)
    return 1


async def _one(host, port, req, timeout):
    t0 = time.perf_counter()
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        w.write(req)
        data = b""
        while True:
            chunk = await asyncio.wait_for(r.read(65536), timeout)
            if not chunk:
                break
            data += chunk
        w.close()
        ok = data.startswith(b"HTTP/1.1 200")
    except Exception:  # noqa: BLE001 - any failure is a failed request
        ok = False
    return (time.perf_counter() - t0) * 1000.0, ok


async def _burst(host, port, path, n):
    req = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n").encode()
    # Everything is prepared; start all connections in the same event-loop turn on "go".
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    t_go = time.time()
    res = await asyncio.gather(*[_one(host, port, req, 10.0) for _ in range(n)])
    lat = [ms for ms, _ in res]
    ok = sum(1 for _, good in res if good)
    print(json.dumps({"max_ms": round(max(lat), 3), "p50_ms": round(statistics.median(lat), 3),
                      "ok": ok, "failed": n - ok, "t_go": round(t_go, 6)}), flush=True)


def burst(argv):
    host, port, path, n = argv[0], int(argv[1]), argv[2], int(argv[3])
    asyncio.run(_burst(host, port, path, n))
    return 0


def idle(argv):
    host, port, n = argv[0], int(argv[1]), int(argv[2])
    socks = []
    failed = 0
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.settimeout(5)
            s.connect((host, port))
            socks.append(s)
        except OSError:
            failed += 1
            s.close()
        if i % 100 == 99:
            time.sleep(0.02)  # keep the accept backlog short
    print(f"opened {len(socks)} failed {failed}", flush=True)
    sys.stdin.readline()
    # Anything already closed by the far side shows up as readable EOF.
    closed_early = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1, socket.MSG_PEEK) == b"":
                closed_early += 1
        except BlockingIOError:
            pass
        except OSError:
            closed_early += 1
        s.close()
    print(f"closed {len(socks)} closed_early {closed_early}", flush=True)
    return 0


def wrk(argv):
    text = open(argv[0], encoding="utf-8", errors="replace").read()
    out = {"rps": None, "requests": None, "errors": {}}
    m = re.search(r"Requests/sec:\s*([\d.]+)", text)
    if m:
        out["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in", text)
    if m:
        out["requests"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        for k, v in zip(("connect", "read", "write", "timeout"), m.groups()):
            if int(v):
                out["errors"][k] = int(v)
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m and int(m.group(1)):
        out["errors"]["non2xx"] = int(m.group(1))
    print(json.dumps(out))
    return 0


def _steady(db, warmup):
    """p50/p99/max in ms of the requests oha scheduled after `warmup` seconds (its SQLite
    output), with latency correction: from the scheduled start to the end."""
    import sqlite3
    con = sqlite3.connect(db)
    try:
        rows = con.execute(
            "SELECT end - COALESCE(start_latency_correction, start) FROM oha "
            "WHERE COALESCE(start_latency_correction, start) >= ? AND status BETWEEN 200 AND 299",
            (warmup,)).fetchall()
    finally:
        con.close()
    lat = sorted(r[0] * 1000.0 for r in rows)
    if not lat:
        return None

    def pct(q):  # nearest rank
        return round(lat[max(0, min(len(lat) - 1, int(-(-q * len(lat) // 1)) - 1))], 3)

    return {"p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": round(lat[-1], 3), "n": len(lat)}


def oha(argv):
    """oha FILE [DB WARMUP_SECONDS]: with the SQLite output, p50/p99 leave out the warm-up."""
    text = open(argv[0], encoding="utf-8", errors="replace").read()
    out = {"p50_ms": None, "p99_ms": None, "max_ms": None, "rps": None, "errors": {}}
    try:
        j = json.loads(text[text.index("{"):])
    except (ValueError, json.JSONDecodeError):
        print(json.dumps(out))
        return 0
    pct = j.get("latencyPercentiles") or {}
    summ = j.get("summary") or {}

    def ms(v):
        return None if v is None else round(float(v) * 1000.0, 3)

    out["p50_ms"] = ms(pct.get("p50"))
    out["p99_ms"] = ms(pct.get("p99"))
    out["max_ms"] = ms(summ.get("slowest"))
    out["p99_all_ms"] = out["p99_ms"]
    if len(argv) >= 3:
        try:
            st = _steady(argv[1], float(argv[2]))
        except Exception as e:  # noqa: BLE001
            st = None
            out["errors"]["steady-state parse"] = str(e)
        if st:
            out.update({"p50_ms": st["p50_ms"], "p99_ms": st["p99_ms"], "max_ms": st["max_ms"],
                        "steady_n": st["n"]})
    out["rps"] = summ.get("requestsPerSec")
    codes = j.get("statusCodeDistribution") or {}
    bad = sum(int(v) for k, v in codes.items() if not str(k).startswith("2"))
    if bad:
        out["errors"]["non2xx"] = bad
    for k, v in (j.get("errorDistribution") or {}).items():
        # Requests still in flight when -z ends are counted as "aborted due to deadline":
        # an artefact of the fixed duration, not a failure.
        if "deadline" not in k:
            out["errors"][k] = int(v)
    if summ.get("successRate") is not None:
        out["success_rate"] = summ.get("successRate")
    print(json.dumps(out))
    return 0


def iperf(argv):
    text = open(argv[0], encoding="utf-8", errors="replace").read()
    out = {"gbps": None, "error": None}
    try:
        j = json.loads(text)
        if j.get("error"):
            out["error"] = j["error"]
        bps = j["end"]["sum_received"]["bits_per_second"]
        out["gbps"] = round(bps / 1e9, 3)
    except (ValueError, KeyError, TypeError) as e:
        out["error"] = out["error"] or f"unparsable iperf3 output: {e}"
    print(json.dumps(out))
    return 0


# metric key -> (title, unit, better, goal) ; better: "higher" or "lower"
METRICS = [
    ("ka_rps", "HTTP keep-alive, 64 connections", "req/s", "higher"),
    ("close_rps", "New connection per request (Connection: close), 64 connections", "req/s", "higher"),
    ("bulk_gbps", "Bulk, iperf3 one TCP stream", "Gbit/s", "higher"),
    ("http_bulk_gbps", "Bulk, one HTTP download of a large file (curl, informational)", "Gbit/s", "higher"),
    ("p50_ms", "Latency p50 at a fixed rate (oha), after a warm-up", "ms", "lower"),
    ("p99_ms", "Latency p99 at a fixed rate (oha), after a warm-up", "ms", "lower"),
    ("p99_all_ms", "Latency p99 at a fixed rate including the warm-up (connection set-up; informational)", "ms", "lower"),
    ("cold_max_ms", "Cold start: worst of 64 simultaneous new connections", "ms", "lower"),
    ("idle_kib", "Memory per idle proxied connection (RSS of both gateways)", "KiB/conn", "lower"),
    ("base_rss_mib", "RSS of both gateways before the idle connections (informational)", "MiB", "lower"),
    ("ka_cpu_us", "Gateway pair CPU time per keep-alive request (informational)", "us/req", "lower"),
    ("close_cpu_us", "Gateway pair CPU time per new-connection request (informational)", "us/req", "lower"),
]

GOALS = [
    # key, description, kind, threshold
    ("ka_rps", "keep-alive req/s >= 1.1x HAProxy", "ratio_ge", 1.1),
    ("close_rps", "new connections req/s >= 5x HAProxy", "ratio_ge", 5.0),
    ("bulk_gbps", "bulk (iperf3) >= 1.0x HAProxy", "ratio_ge", 1.0),
    ("p99_ms", "p99 latency at fixed rate <= 1.0x HAProxy", "ratio_le", 1.0),
    ("cold_max_ms", "cold-start worst request <= 10 ms", "abs_le", 10.0),
    ("idle_kib", "idle RSS per connection <= 0.5x HAProxy", "ratio_le", 0.5),
]

SYSTEMS = ["strait", "haproxy", "direct"]


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.1f}"
    return f"{v:.3g}" if abs(v) < 1 else f"{v:.2f}"


def report(argv):
    rows = []
    notes = []
    meta = {}
    for line in open(argv[0], encoding="utf-8"):
        parts = line.rstrip("\n").split("\t")
        if not parts or not parts[0]:
            continue
        if parts[0] == "#meta":
            meta[parts[1]] = parts[2]
            continue
        if parts[0] == "#note":
            notes.append(parts[1])
            continue
        metric, system, rnd, value = parts[0], parts[1], int(parts[2]), parts[3]
        note = parts[4] if len(parts) > 4 else ""
        val = None if value in ("", "NA", "None", "null") else float(value)
        rows.append((metric, system, rnd, val, note))
    rounds = sorted({r for _, _, r, _, _ in rows}) or [1]
    summary = {"meta": meta, "metrics": {}, "goals": [], "notes": notes}
    out = []
    for key, title, unit, better in METRICS:
        mrows = [r for r in rows if r[0] == key]
        if not mrows:
            continue
        out.append(f"\n== {title} [{unit}, {better} is better] ==")
        hdr = f"{'':10}" + "".join(f"{'round ' + str(r):>14}" for r in rounds) + f"{'median':>14}"
        out.append(hdr)
        med = {}
        per = {}
        errs = []
        for system in SYSTEMS:
            srows = {r[2]: r for r in mrows if r[1] == system}
            if not srows:
                continue
            vals = [srows[r][3] if r in srows else None for r in rounds]
            # A round whose requests failed has no meaningful value: shown, not in the median.
            good = [srows[r][3] for r in rounds
                    if r in srows and srows[r][3] is not None and "failed=" not in srows[r][4]]
            med[system] = statistics.median(good) if good else None
            per[system] = vals
            cells = [_fmt(v) + ("*" if r in srows and srows[r][4] else "") for v, r in zip(vals, rounds)]
            out.append(f"{system:10}" + "".join(f"{c:>14}" for c in cells) + f"{_fmt(med[system]):>14}")
            for r in rounds:
                if r in srows and srows[r][4]:
                    errs.append(f"{system} round {r}: {srows[r][4]}")
        ratio = None
        if med.get("strait") is not None and med.get("haproxy"):
            ratio = med["strait"] / med["haproxy"]
            out.append(f"ratio Strait/HAProxy: {ratio:.2f}x")
        if med.get("strait") is not None and med.get("direct"):
            out.append(f"Strait/direct: {med['strait'] / med['direct']:.2f}x"
                       + (f"   HAProxy/direct: {med['haproxy'] / med['direct']:.2f}x"
                          if med.get("haproxy") is not None else ""))
        for e in errs:
            out.append(f"  * {e}" + (" (not in the median)" if "failed=" in e else ""))
        summary["metrics"][key] = {"title": title, "unit": unit, "better": better,
                                   "rounds": per, "median": med,
                                   "ratio_strait_haproxy": None if ratio is None else round(ratio, 3),
                                   "issues": errs}
    print("\n".join(out))
    # Summary block.
    lines = ["", "=" * 78, "SUMMARY (medians over %s rounds; ratio = Strait / HAProxy)" % len(rounds), "=" * 78]
    for key, desc, kind, thr in GOALS:
        m = summary["metrics"].get(key)
        med = (m or {}).get("median", {})
        s, h = med.get("strait"), med.get("haproxy")
        unit = (m or {}).get("unit", "")
        if kind == "abs_le":
            value = s
            ok = None if s is None else s <= thr
            shown = f"Strait {_fmt(s)} {unit} (HAProxy {_fmt(h)} {unit})"
        else:
            value = (m or {}).get("ratio_strait_haproxy")
            ok = None if value is None else (value >= thr if kind == "ratio_ge" else value <= thr)
            shown = f"{_fmt(value)}x  (Strait {_fmt(s)} vs HAProxy {_fmt(h)} {unit})"
        # Rounds in which Strait's requests failed: the goal is not met, whatever the median.
        failed = [i for i in (m or {}).get("issues", []) if i.startswith("strait ") and "failed=" in i]
        if failed:
            ok = False
            shown += f"; requests FAILED in {len(failed)} of {len(rounds)} rounds"
        verdict = "n/a " if ok is None else ("PASS" if ok else "FAIL")
        lines.append(f"[{verdict}] {desc:45} {shown}")
        summary["goals"].append({"metric": key, "goal": desc, "kind": kind, "threshold": thr,
                                 "value": value, "strait": s, "haproxy": h,
                                 "pass": ok})
    # p50 and the p99s come from the same oha run and carry the same notes: list them once.
    issues = [f"{key}: {i}" for key, m in summary["metrics"].items() if key not in ("p50_ms", "p99_all_ms")
              for i in m["issues"]]
    if issues:
        lines.append("Issues seen (marked * in the tables):")
        lines.extend(f"  ! {i}" for i in issues)
    for n in notes:
        lines.append(f"note: {n}")
    print("\n".join(lines))
    with open(argv[1], "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    return 0


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, argv = sys.argv[1], sys.argv[2:]
    fn = {"freeports": freeports, "burst": burst, "idle": idle, "wrk": wrk, "oha": oha,
          "iperf": iperf, "report": report}.get(cmd)
    if fn is None:
        print(__doc__, file=sys.stderr)
        return 2
    return fn(argv)


if __name__ == "__main__":
    sys.exit(main())
