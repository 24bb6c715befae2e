"""Trajectory viewer benchmark: build time and page load time for runs of 1,000 / 10,000 / 100,000 episodes.

    python bench/view.py [--sizes 1000,10000,100000] [--loads 3] [--json]

Each run folder is written through `TrajectoryStore` (parts, then `finalize` into sorted parquet shards) from
real oracle episodes of the reference tasks (a few KB of messages each), copied with seeded changes: a task id
and prompt of their own for every four samples, rewards, statuses and error kinds drawn at random. The build
(`toolgym view`'s `build_view`, reading the parquet) runs in a child process, timed inside it, with its peak
memory. Page load: headless Debian chromium opens `index.html` from disk, and the time is the page's own
`tg-first-list` mark (navigation start to the first list drawn); then a filter (category + failed) and opening
one episode (its chunk loaded and drawn) are timed inside the page. Goal (issue 19): first list <= 2 s at 100,000.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_S = 2.0
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split()


def templates(work: Path) -> list[dict]:
    """Real rows: one in-process oracle rollout of the reference tasks (about two seconds)."""
    from toolgym.agent.runstore import TrajectoryStore

    out = work / "oracle"
    cmd = [sys.executable, "-m", "toolgym", "rollout", "reference", "--policy", "oracle", "--out", str(out)]
    subprocess.run([*cmd, "--backend", "inprocess", "--progress", "none"], check=True, capture_output=True)
    return TrajectoryStore(out).rows()


def synthetic_run(out: Path, n: int, rows: list[dict], seed: int = 0) -> dict:
    """A finalized run folder of `n` episodes made from `rows`; returns its size on disk."""
    from toolgym.agent.runstore import TrajectoryStore
    from toolgym.agent.trajectory import ERROR_KINDS

    rng = random.Random(seed)
    decoded = [(r, json.loads(r["messages"])) for r in rows]
    store = TrajectoryStore(out)
    batch: list[dict] = []
    with store.locked():
        for i in range(n):
            base, messages = decoded[(i // 4) % len(decoded)]
            task = f"{base['task_id']}-{i // 4:06d}"
            words = " ".join(rng.choice(WORDS) for _ in range(6))
            messages = [dict(m) for m in messages]
            first = next(j for j, m in enumerate(messages) if m["role"] == "user")
            messages[first]["content"] = f"[{words}] {messages[first]['content']}"
            reward = rng.choice((0.0, 0.0, 1.0, 1.0, 1.0, 0.5))
            errors = dict.fromkeys(ERROR_KINDS, 0)
            if rng.random() < 0.3:
                errors[rng.choice(("tool_error", "invalid_arguments", "parse", "unknown_tool"))] = (
                    rng.randint(1, 3)
                )
            batch.append(
                dict(
                    base,
                    key=f"{task}#{i % 4}",
                    task_id=task,
                    sample=i % 4,
                    status=rng.choice(("ok",) * 18 + ("timeout", "infra_error")),
                    reward=reward,
                    success=reward >= 1.0,
                    wall_s=rng.uniform(0.5, 60.0),
                    messages=json.dumps(messages, ensure_ascii=False),
                    errors=json.dumps(errors),
                )
            )
            if len(batch) == 5000:
                store.commit(batch)
                batch = []
        store.commit(batch)
        store.finalize()
    return {"parquet_mb": sum(f.stat().st_size for f in out.rglob("*.parquet")) / 1e6}


# Peak memory from VmHWM (this process's own high-water mark): getrusage's maxrss would carry over the parent's,
# which just wrote the run, across fork and exec.
BUILD = """
import json, re, sys, time
from toolgym.agent.viewer import build_view
t0 = time.perf_counter()
page = build_view(sys.argv[1])
build_s = time.perf_counter() - t0
hwm = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
print(json.dumps({"build_s": build_s, "page": str(page), "peak_rss_mb": hwm / 1024}))
"""


def build(run: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", BUILD, str(run)], check=True, capture_output=True, text=True)
    out = json.loads(done.stdout)
    view = Path(out["page"]).parent
    files = [f for f in view.rglob("*") if f.is_file()]
    out["index_mb"] = (view / "data" / "index.js").stat().st_size / 1e6
    out["text_mb"] = (view / "data" / "text.js").stat().st_size / 1e6
    out["view_mb"] = sum(f.stat().st_size for f in files) / 1e6
    out["files"] = len(files)
    return out


# In the page: apply a filter, then open one episode; each timed to the moment its result is drawn.
TIMED = """
const done = arguments[arguments.length - 1];
const until = (ok, t0, then) => { const tick = () => ok() ? then(performance.now() - t0) : setTimeout(tick, 1); tick(); };
const before = document.getElementById("count").textContent;
let t0 = performance.now();
location.hash = "category=search&reward=fail";
until(() => document.getElementById("count").textContent !== before, t0, (filter_ms) => {
  const link = document.querySelector("#list-body a");
  t0 = performance.now();
  location.hash = link.getAttribute("href").slice(1);
  until(() => document.querySelector("#side-a .verdict"), t0, (episode_ms) => done({filter_ms, episode_ms}));
});
"""


def page_load(driver, page: Path, loads: int) -> dict:
    firsts, timed = [], []
    for _ in range(loads):
        driver.get("about:blank")
        driver.get(page.as_uri())
        end = time.monotonic() + 60
        while not driver.execute_script("return window.TG_FIRST_LIST_MS"):
            if time.monotonic() > end:
                raise RuntimeError(f"the page drew no list in 60 s: {driver.get_log('browser')}")
            time.sleep(0.02)
        mark = driver.execute_script("return performance.getEntriesByName('tg-first-list')[0].startTime")
        firsts.append(mark / 1000)
        timed.append(driver.execute_async_script(TIMED))
    return {
        "first_list_s": statistics.median(firsts),
        "first_list_max_s": max(firsts),
        "filter_ms": statistics.median(t["filter_ms"] for t in timed),
        "episode_ms": statistics.median(t["episode_ms"] for t in timed),
    }


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(60)
    return driver


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000", help="episodes per run, comma-separated")
    ap.add_argument("--loads", type=int, default=3, help="page loads per size (the median is reported)")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-view-") as tmp:
        work = Path(tmp)
        rows = templates(work)
        driver = browser()
        try:
            for n in (int(s) for s in args.sizes.split(",")):
                run = work / f"run-{n}"
                t0 = time.perf_counter()
                row = {"episodes": n, **synthetic_run(run, n, rows)}
                row["write_run_s"] = time.perf_counter() - t0
                row.update(build(run))
                row.update(page_load(driver, Path(row.pop("page")), args.loads))
                row["goal_met"] = row["first_list_s"] <= GOAL_S
                results.append(row)
                print(f"... {n} episodes done", file=sys.stderr)
        finally:
            driver.quit()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    head = ("episodes", "parquet MB", "build s", "peak RSS MB", "view MB", "index MB", "files", "first list s",
            "filter ms", "open episode ms")  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in results:
        cells = [f"{r['episodes']:,}", f"{r['parquet_mb']:.1f}", f"{r['build_s']:.1f}", f"{r['peak_rss_mb']:.0f}",
                 f"{r['view_mb']:.1f}", f"{r['index_mb']:.2f}", str(r["files"]),
                 f"{r['first_list_s']:.2f} (max {r['first_list_max_s']:.2f})", f"{r['filter_ms']:.0f}",
                 f"{r['episode_ms']:.0f}"]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    print(
        f"\ngoal: first list <= {GOAL_S} s at every size: {'met' if all(r['goal_met'] for r in results) else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
