#!/usr/bin/env bash
# Haven's DNS filter beside dnsmasq and unbound, in one command, with the
# shared harness (../shared/bench): each server on one core, a local upstream,
# N blocked domains, warm and cold query mixes. Prints a Markdown table.
#
#   bench/dns.sh [N]            # default N=1000000; needs root (apt, port 53 upstream)
#
# Environment: BENCH (harness folder, default ../shared/bench beside the repo),
# RUNS (default 3), DNSPERF_SECS (default 10), SUTS (default "ours unbound dnsmasq").
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
N=${1:-1000000}
BENCH=${BENCH:-$REPO/../shared/bench}
SUTS=${SUTS:-"ours unbound dnsmasq"}
[ -x "$BENCH/dns_bench.sh" ] || { echo "no benchmark harness at $BENCH (set BENCH=...)" >&2; exit 1; }

need=()
for tool in dnsmasq unbound dnsperf dig nginx; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing the peers and tools: ${need[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dnsmasq unbound dnsperf dnsutils nginx curl >/dev/null
fi

cargo build --release -p haven >&2
export RESULTS_DIR=${RESULTS_DIR:-/tmp/filterbench/results-dns-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$RESULTS_DIR"
export OURS_DNS_CMD="$REPO/target/release/haven dns --listen \$SUT_LISTEN --upstream \$SUT_UPSTREAM --blocklist \$SUT_BLOCKLIST"
export OURS_COMM=haven

"$BENCH/gen_data.sh" "$N" >&2
"$BENCH/setup_upstream.sh" start >&2
trap '"$BENCH/setup_upstream.sh" stop >&2' EXIT
for sut in $SUTS; do
  for mix in warm cold; do
    MIX=$mix "$BENCH/dns_bench.sh" "$sut" "$N" >&2 || echo "FAILED: $sut $mix" >&2
  done
done

python3 - "$RESULTS_DIR/dns.tsv" "$N" <<'PY'
import csv, statistics, sys
path, n = sys.argv[1], sys.argv[2]
rows = list(csv.DictReader(open(path), delimiter="\t"))
def med(vals):
    vals = [float(v) for v in vals if v not in ("", "NA")]
    return statistics.median(vals) if vals else float("nan")
groups = {}
for r in rows:
    groups.setdefault((r["sut"], r["mix"]), []).append(r)
base = {mix: med([r["qps"] for r in groups.get(("unbound", mix), [])]) for mix in ("warm", "cold")}
print(f"DNS filters, {int(n):,} blocked domains, one core each, medians of {max(len(v) for v in groups.values())} runs\n")
print("| server | mix | queries/s | vs unbound | mean latency ms | ready ms | RSS MB | foreign CPU % |")
print("|---|---|---|---|---|---|---|---|")
for (sut, mix), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    q = med([r["qps"] for r in rs])
    ratio = q / base[mix] if base.get(mix) else float("nan")
    print(f"| {sut} | {mix} | {q:,.0f} | {ratio:.2f}x | {med([r['avg_lat_ms'] for r in rs]):.3f} | "
          f"{med([r['ready_ms'] for r in rs]):,.0f} | {med([r['rss_after_kb'] for r in rs])/1024:,.0f} | {med([r['foreign_cpu_pct'] for r in rs]):.0f} |")
PY
