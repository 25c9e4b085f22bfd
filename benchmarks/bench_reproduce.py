"""Wall time and memory of a whole pipeline run from a fresh clone, stage by stage.

Clones this checkout's HEAD into a temporary folder (its .venv linked, not rebuilt), runs
`/usr/bin/time -v make reproduce-real` there (or `make reproduce` with `--repo .`), and prints:
each hosted stage's wall time and own peak RSS (the `stage <name>: ...` lines `rlvr.stagehost`
prints), the run's wall, user and system time and its largest process's peak RSS (GNU time),
the peak RSS of the whole process tree (sampled every 2 s) and the load average over the run
(the machine may be shared: read the times with it). Writes the same as JSON with `--json`.

Run:  python benchmarks/bench_reproduce.py                 (the real pair: about an hour)
      python benchmarks/bench_reproduce.py --repo .        (the toy study)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGE_LINE = re.compile(r"^stage (\S+): ([\d.]+) s, peak RSS ([\d.]+) GB, ([\d.]+) GB after")
TIME_FIELDS = {"wall": "Elapsed (wall clock) time", "user_s": "User time (seconds)",
               "system_s": "System time (seconds)", "max_rss_kb": "Maximum resident set size"}


def tree_rss_gb(pid: int) -> float:
    """Sum of the resident sets of `pid` and all its descendants, in GB."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
            children.setdefault(int(fields[1]), []).append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo += children.get(p, [])
    return total / 1e9


def _seconds(clock: str) -> float:
    parts = [float(x) for x in clock.split(":")]
    return sum(v * 60 ** i for i, v in enumerate(reversed(parts)))


def run(repo: str, clone: Path) -> dict:
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    (clone / ".venv").symlink_to(ROOT / ".venv")
    target = "reproduce" if repo == "." else f"reproduce-{repo}"
    log = clone / "reproduce.log"
    samples: list[tuple[float, float, float]] = []  # (seconds, tree RSS GB, 1-min load)
    start = time.perf_counter()
    with log.open("w") as out:
        # the clone's code, not the checkout the linked .venv was installed from
        env = {**os.environ, "PYTHONPATH": str(clone)}
        proc = subprocess.Popen(["/usr/bin/time", "-v", "make", target], cwd=clone, stdout=out,
                                stderr=subprocess.STDOUT, text=True, env=env)

        def sample() -> None:
            while proc.poll() is None:
                load = float(Path("/proc/loadavg").read_text().split()[0])
                samples.append((time.perf_counter() - start, tree_rss_gb(proc.pid), load))
                time.sleep(2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        proc.wait()
        sampler.join()
    text = log.read_text()
    timing = {}
    for key, label in TIME_FIELDS.items():
        found = re.search(rf"{re.escape(label)}[^:]*: (.+)", text)
        timing[key] = found.group(1).strip() if found else None
    stages = [{"stage": m[1], "seconds": float(m[2]), "peak_rss_gb": float(m[3]),
               "rss_after_gb": float(m[4])}
              for m in (STAGE_LINE.match(line) for line in text.splitlines()) if m]
    return {
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, text=True,
                                 capture_output=True).stdout.strip(),
        "target": target, "returncode": proc.returncode,
        "wall_s": _seconds(timing["wall"]) if timing["wall"] else None,
        "user_s": float(timing["user_s"] or "nan"), "system_s": float(timing["system_s"] or "nan"),
        "largest_process_peak_rss_gb": int(timing["max_rss_kb"] or 0) / 1e6,
        "tree_peak_rss_gb": max((s[1] for s in samples), default=float("nan")),
        "load_mean": sum(s[2] for s in samples) / max(len(samples), 1),
        "load_max": max((s[2] for s in samples), default=float("nan")),
        "stages": stages, "log": str(log),
    }


def report(result: dict) -> str:
    lines = [f"`make {result['target']}` from a fresh clone of {result['commit']} "
             f"(exit {result['returncode']}): {result['wall_s'] / 60:.1f} min wall, "
             f"{result['user_s']:.0f} s user + {result['system_s']:.0f} s system "
             f"({(result['user_s'] + result['system_s']) / 60:.1f} CPU-min); largest process "
             f"peak RSS {result['largest_process_peak_rss_gb']:.2f} GB, process tree "
             f"{result['tree_peak_rss_gb']:.2f} GB (sampled every 2 s); load average "
             f"{result['load_mean']:.1f} mean, {result['load_max']:.1f} max", "",
             "| stage | wall s | peak RSS GB (host process) | RSS after GB |", "|---|---|---|---|"]
    lines += [f"| {s['stage']} | {s['seconds']:.0f} | {s['peak_rss_gb']:.2f} | "
              f"{s['rss_after_gb']:.2f} |" for s in result["stages"]]
    lines.append(f"| (sum of stages) | {sum(s['seconds'] for s in result['stages']):.0f} | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default="real", help="the workspace: `real` (default) or `.`")
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--keep", action="store_true", help="keep the clone (its data/, log)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-reproduce-"))
    result = run(args.repo, tmp / "clone")
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if not args.keep:
        subprocess.run(["rm", "-rf", str(tmp)], check=False)
    sys.exit(result["returncode"])


if __name__ == "__main__":
    main()
