#!/usr/bin/env bash
# Haven's proxy beside squid + squidGuard and E2Guardian, in one command, with
# the shared harness (../shared/bench): each proxy on one core, a local nginx
# origin, N blocked domains, concurrency 1 and 50, with and without
# keep-alive. Prints a Markdown table with ratios.
#
#   bench/proxy.sh [N]          # default N=1000000; needs root (apt, /etc/hosts, port 53 upstream)
#
# Environment: BENCH (harness folder, default ../shared/bench beside the repo),
# RUNS (default 3), SUTS (default "ours squidguard e2guardian").
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
N=${1:-1000000}
BENCH=${BENCH:-$REPO/../shared/bench}
SUTS=${SUTS:-"ours squidguard e2guardian"}
[ -x "$BENCH/proxy_bench.sh" ] || { echo "no benchmark harness at $BENCH (set BENCH=...)" >&2; exit 1; }

need=()
for tool in squid squidGuard e2guardian ab nginx unbound curl; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing the peers and tools: ${need[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq squid squidguard e2guardian apache2-utils nginx unbound dnsutils curl >/dev/null
fi

cargo build --release -p haven >&2
export RESULTS_DIR=${RESULTS_DIR:-/tmp/filterbench/results-proxy-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$RESULTS_DIR"
# The nginx origin is on loopback, which Haven's proxy refuses unless allowed.
export OURS_PROXY_CMD="$REPO/target/release/haven proxy --listen \$SUT_LISTEN --blocklist \$SUT_BLOCKLIST --allow-internal 127.0.0.0/8 --allow-internal ::1/128"
export OURS_COMM=haven

"$BENCH/gen_data.sh" "$N" >&2
"$BENCH/setup_upstream.sh" start >&2
trap '"$BENCH/setup_upstream.sh" stop >&2' EXIT
for sut in $SUTS; do
  for ka in 0 1; do
    KEEPALIVE=$ka "$BENCH/proxy_bench.sh" "$sut" "$N" >&2 || echo "FAILED: $sut keepalive=$ka" >&2
  done
done

python3 - "$RESULTS_DIR/proxy.tsv" "$N" <<'PY'
import csv, statistics, sys
path, n = sys.argv[1], sys.argv[2]
rows = list(csv.DictReader(open(path), delimiter="\t"))
def med(vals):
    vals = [float(v) for v in vals if v not in ("", "NA")]
    return statistics.median(vals) if vals else float("nan")
groups = {}
for r in rows:
    groups.setdefault((r["sut"], r["keepalive"], r["url"], r["conc"]), []).append(r)
def rps(sut, ka, url, c):
    return med([r["rps"] for r in groups.get((sut, ka, url, c), [])])
runs = max(len(v) for v in groups.values())
print(f"Filtering proxies, {int(n):,} blocked domains, one core each, nginx origin, medians of {runs} runs\n")
print("| proxy | keep-alive | URL | concurrency | requests/s | vs squid+squidGuard | vs E2Guardian | p50 ms | p99 ms | failed | ready ms | RSS MB | foreign CPU % |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for key, rs in sorted(groups.items(), key=lambda kv: (kv[0][2], kv[0][1], int(kv[0][3]), kv[0][0])):
    sut, ka, url, c = key
    q = med([r["rps"] for r in rs])
    sg, e2 = rps("squidguard", ka, url, c), rps("e2guardian", ka, url, c)
    ratio = lambda b: f"{q / b:.2f}x" if b == b and b > 0 else "–"
    print(f"| {sut} | {'yes' if ka == '1' else 'no'} | {url} | {c} | {q:,.0f} | {ratio(sg)} | {ratio(e2)} | "
          f"{med([r['p50_ms'] for r in rs]):.0f} | {med([r['p99_ms'] for r in rs]):.0f} | {med([r['failed'] for r in rs]):.0f} | "
          f"{med([r['ready_ms'] for r in rs]):,.0f} | {med([r['rss_after_kb'] for r in rs])/1024:,.0f} | {med([r['foreign_cpu_pct'] for r in rs]):.0f} |")
PY
