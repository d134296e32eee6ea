#!/bin/sh
# Issue 11: mixture-of-experts models larger than memory, experts placed
# and fetched one by one (`make bench-moe`; `make bench` runs it unless
# MOE=0). Synthesizes once into $BENCH_DIR a Qwen3-30B-A3B-shaped Q4_K_M
# model with 12 of its 48 layers (n_embd 2048, 128 experts, 8 used, expert
# FFN 768, 32 heads, 4 KV heads, head dim 128; about 4.6 GB) twice:
# uniform routing (--routing-skew 0) and Zipf-like expert popularity
# (--routing-skew $SKEW, default 1: the top 10 % of experts take about half
# the picks), plus the dense qwen3 model of the same active bytes (FFN
# 8 x 768 = 6144 wide). Then, runs alternated, medians of $N_RUNS:
#   - --mem = 25 % of the file, 2 threads, each expert-cache policy
#     (--moe-cache lru|lfu) with each prefetch predictor (--moe-prefetch
#     none|prev|router): decode tok/s, GB read per token, expert hit rate,
#     prefetches used, and the fraction of the disk bound (bytes read per
#     token at the measured hit rate / the O_DIRECT bandwidth measured on the
#     model file at the start of each round; target >= 0.85);
#   - both models resident (--mem unset) against the dense model (target:
#     within 10 %);
#   - llama.cpp (llama-bench on PATH) on both files in a memory cgroup of
#     the same size, when it is installed (target: >= 10x its tok/s, against
#     strata's default policy, LFU with the router's prefetch;
#     bench/llama_sid.sh unpacks Debian sid's where the release has none).
# Decoding samples (TEMP=1, SEED=1: the same tokens in every run):
# greedy decoding of a random-weight model loops over a few tokens, and
# routing, which follows the tokens, would then repeat and make every cache
# look good. TEMP=0 gives greedy decoding anyway.
# Environment: N_RUNS (3), N_GEN tokens (32), SKEW (1), VOCAB (32000),
# LAYERS (12), TEMP (1), SEED (1), THREADS (2), QUICK=1 (a small model: a
# smoke test of this script, not numbers).
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh
N_RUNS=${N_RUNS:-3}
N_GEN=${N_GEN:-32}
SKEW=${SKEW:-1}
VOCAB=${VOCAB:-32000}
LAYERS=${LAYERS:-12}
TEMP=${TEMP:-1}
SEED=${SEED:-1}
THREADS=${THREADS:-2}
QUICK=${QUICK:-0}
PROMPT="Once upon a time"

if [ "$QUICK" = 1 ]; then
    tag=quick
    dims="--n-embd 512 --n-layers 8 --n-heads 8 --n-kv-heads 2 --head-dim 64 --vocab 2000 --ctx 1024"
    moe="--n-expert 64 --n-expert-used 4 --expert-ff 256 --n-ff 1024"
    dense_ff=1024
else
    tag="l$LAYERS-v$VOCAB"
    dims="--n-embd 2048 --n-layers $LAYERS --n-heads 32 --n-kv-heads 4 --head-dim 128 --vocab $VOCAB --ctx 4096"
    moe="--n-expert 128 --n-expert-used 8 --expert-ff 768 --n-ff 6144"
    dense_ff=6144
fi
# shellcheck disable=SC2086 # option lists are meant to split
uni=$(synth "moe-a3b-$tag-uniform" --arch qwen3moe $dims $moe --type q4_k_m --seed 1 --routing-skew 0)
# shellcheck disable=SC2086
skw=$(synth "moe-a3b-$tag-skew$SKEW" --arch qwen3moe $dims $moe --type q4_k_m --seed 1 --routing-skew "$SKEW")
# shellcheck disable=SC2086
dense=$(synth "moe-a3b-$tag-dense" --arch qwen3 $dims --n-ff $dense_ff --type q4_k_m --seed 1)
size=$(stat -c %s "$uni")
mem=$((size / 4))
measure "$uni" # also saves the profile the run's end lines compare with
# The plan's expert hit rate for each file at --mem, from the routing `plan`
# measures on it (once per file, cached: the runs' predictions use it too).
plan_hit() {
    "$STRATA" plan -m "$1" --mem "$mem" -c 512 2>/dev/null | sed -n 's/.*hit rate \([0-9.]*\)% (\([a-z]* routing\).*/\1 % (\2)/p'
}
plan_uni=$(plan_hit "$uni")
plan_skw=$(plan_hit "$skw")

gib() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 2^30 }'; }
gb() { awk -v b="$1" 'BEGIN { printf "%.3f", b / 1e9 }'; }

# Whether this strata has the expert flags (older builds reject them).
has_flag() { "$STRATA" run --help 2>&1 | grep -q -- "$1"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/strata-moe.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

# The rows: ID|MODEL VARIABLE|LABEL|strata run flags ("-" for a flag this
# build lacks: printed as "flag not available", not run).
rows=$work/rows
: > "$rows"
n=0
add_row() { n=$((n + 1)); printf '%s|%s|%s|%s\n' "$n" "$1" "$2" "$3" >> "$rows"; }
for v in uni skw; do
    if [ "$v" = uni ]; then name="uniform"; else name="skew $SKEW"; fi
    for policy in lru lfu; do
        for pf in none prev router; do
            if has_flag --moe-cache && has_flag --moe-prefetch; then
                add_row "$v" "$name, 25 %, $policy, prefetch $pf" "--mem $mem --moe-cache $policy --moe-prefetch $pf"
            else
                add_row "$v" "$name, 25 %, $policy, prefetch $pf" "-"
            fi
        done
    done
    if ! has_flag --moe-cache; then add_row "$v" "$name, 25 %, default" "--mem $mem"; fi
done
add_row uni "uniform, resident" ""
add_row skw "skew $SKEW, resident" ""
add_row dense "dense qwen3, resident" ""

# One run of a row: its figures, space-separated, "-" where absent:
#   tok/s GB/token hit% prefetch-used% bound% cache peak-RSS-MiB disk-busy% plan-tok/s
run_row() {
    m=$1; shift
    # shellcheck disable=SC2086
    out=$("$STRATA" run -m "$m" -p "$PROMPT" -n "$N_GEN" --temp "$TEMP" -s "$SEED" -t "$THREADS" -c 512 "$@" \
        2>&1 >/dev/null) || { echo "$out" | tail -n 2 >&2; echo "failed"; return 0; }
    for f in gen_tps streamed_gb expert_hit prefetch_used bound_pct expert_cache peak_rss disk_busy predicted_tps; do
        v=$(echo "$out" | $f | head -n 1)
        printf '%s ' "${v:--}"
    done
    echo
}

echo "== MoE: $(basename "$uni") and $(basename "$skw"), $(gib "$size") GiB each; --mem $(gib "$mem") GiB (25 %);" \
    "disk $(awk -v b="$DISK_BW" 'BEGIN { printf "%.2f", b / 1e9 }') GB/s (O_DIRECT, measured on the file)"
for r in $(seq "$N_RUNS"); do
    # A shared machine's disk speed drifts (1.4-4.4 GB/s seen): measured again
    # each round, so that the round's end lines compare with what it gives now.
    [ "$r" -gt 1 ] && measure "$uni"
    echo "$DISK_BW" >> "$work/disk"
    while IFS='|' read -r id var label flags; do
        [ "$flags" = "-" ] && continue
        eval "m=\$$var"
        # shellcheck disable=SC2086
        run_row "$m" $flags >> "$work/row$id"
    done < "$rows"
    echo "   round $r of $N_RUNS done" >&2
done

DISK_BW=$(median < "$work/disk")
echo "   disk (O_DIRECT, per round): $(awk '{ printf "%s%.2f", (NR > 1 ? ", " : ""), $1 / 1e9 }' "$work/disk") GB/s;" \
    "median $(awk -v b="$DISK_BW" 'BEGIN { printf "%.2f", b / 1e9 }') GB/s"

# med ID COLUMN: the median of a row's numeric values in COLUMN, or n/a
med() {
    v=$(awk -v c="$2" '$1 != "failed" && $c ~ /^[0-9.]+$/ { print $c }' "$work/row$1" 2>/dev/null | median)
    if [ -z "$(awk -v c="$2" '$1 != "failed" && $c ~ /^[0-9.]+$/' "$work/row$1" 2>/dev/null)" ]; then echo n/a
    else echo "$v"; fi
}
# the cache column is text ("412/1536"): the last run's
last() { awk -v c="$2" '$1 != "failed" { v = $c } END { print (v == "" || v == "-") ? "n/a" : v }' "$work/row$1" 2>/dev/null; }

printf '\n%-36s %9s %9s %7s %9s %9s %10s %9s %10s %10s %9s\n' configuration "tok/s" "GB/token" "hit %" "prefetch" \
    "of bound" "bound t/s" "cache" "peak MiB" "disk busy" "plan t/s"
while IFS='|' read -r id var label flags; do
    if [ "$flags" = "-" ]; then printf '%-36s flag not available\n' "$label"; continue; fi
    if [ ! -s "$work/row$id" ] || ! grep -qv '^failed' "$work/row$id"; then printf '%-36s failed\n' "$label"; continue; fi
    tps=$(med "$id" 1); g=$(med "$id" 2); hit=$(med "$id" 3); pf=$(med "$id" 4); bp=$(med "$id" 5)
    cache=$(last "$id" 6); rss=$(med "$id" 7); busy=$(med "$id" 8); pt=$(med "$id" 9)
    [ "$busy" != n/a ] && busy="$busy %"
    # the disk bound at the bytes this run read per token, and the fraction reached
    bt=$(awk -v g="$g" -v bw="$DISK_BW" 'BEGIN { if (g ~ /^[0-9.]+$/ && g > 0) printf "%.2f", bw / (g * 1e9); else print "n/a" }')
    if [ "$bp" = n/a ] && [ "$bt" != n/a ]; then
        bp=$(awk -v t="$tps" -v b="$bt" 'BEGIN { printf "%.0f", 100 * t / b }')
    fi
    [ "$bp" != n/a ] && bp="$bp %"
    [ "$pf" != n/a ] && pf="$pf %"
    printf '%-36s %9s %9s %7s %9s %9s %10s %9s %10s %10s %9s\n' "$label" "$tps" "$g" "$hit" "$pf" "$bp" "$bt" "$cache" "$rss" \
        "$busy" "$pt"
    echo "$id $tps" >> "$work/tps"
done < "$rows"
# tps_of LABEL: the median tok/s of the row with that label, or empty
tps_of() {
    id=$(awk -F'|' -v l="$1" '$3 == l { print $1 }' "$rows")
    awk -v id="$id" '$1 == id && $2 ~ /^[0-9.]+$/ { print $2 }' "$work/tps" 2>/dev/null
}

# Resident: the MoE models against the dense model of the same active bytes.
tu=$(tps_of "uniform, resident"); ts=$(tps_of "skew $SKEW, resident"); td=$(tps_of "dense qwen3, resident")
echo "plan's expert hit rate at this --mem (LFU, no prefetch: compare the 'none' rows): uniform ${plan_uni:-n/a}," \
    "skew $SKEW ${plan_skw:-n/a}; plan t/s: the prediction each run's end line compares with"
echo
echo "active weight bytes per token: MoE $(gb "$(active_bytes "$uni")") GB, dense $(gb "$(active_bytes "$dense")") GB"
awk -v u="$tu" -v s="$ts" -v d="$td" 'BEGIN {
    if (d ~ /^[0-9.]+$/ && d > 0 && u ~ /^[0-9.]+$/ && s ~ /^[0-9.]+$/)
        printf "resident decode, MoE / dense: %.2f (uniform), %.2f (skewed); target >= 0.90\n", u / d, s / d
    else print "resident decode, MoE / dense: n/a (a run failed)" }'

# llama.cpp on each file, in a memory cgroup of the --mem size
# (LLAMA_BENCH_ARGS: extra flags, e.g. --repack 0 -lm mmap). Its CSV: a
# header naming avg_ts, then one line per test (quoted fields).
llama_row() { # FILE NAME STRATA-ROW-LABEL
    # shellcheck disable=SC2086
    if res=$(cgroup_run "$mem" "$work/llama.log" llama-bench -m "$1" -p 0 -n "$N_GEN" -t "$THREADS" -r 1 \
        -o csv ${LLAMA_BENCH_ARGS:-}); then where="in a $(gib "$mem") GiB cgroup"
    else
        # shellcheck disable=SC2086
        llama-bench -m "$1" -p 0 -n "$N_GEN" -t "$THREADS" -r 1 -o csv ${LLAMA_BENCH_ARGS:-} > "$work/llama.log" 2>&1 &&
            res="0 - -" || res="$? - -"
        where="without a cgroup (needs root and a cgroup v1 memory hierarchy)"
    fi
    lt=$(llama_ts "$work/llama.log" tg)
    if [ -n "$lt" ]; then
        awk -v l="$lt" -v s="$(tps_of "$3")" -v w="$where" -v n="$2" -v r="$3" 'BEGIN {
            printf "llama.cpp (llama-bench, %s), %s: %.3f tok/s", w, n, l
            if (s ~ /^[0-9.]+$/ && l > 0) printf "; strata (%s) / llama.cpp: %.1fx (target >= 10)", r, s / l
            printf "\n" }'
    else
        echo "llama.cpp (llama-bench, $where), $2: no result (exit, OOM kills, peak: $res); its output:"
        tail -n 3 "$work/llama.log"
    fi
}
if command -v llama-bench >/dev/null 2>&1; then
    llama_row "$uni" uniform "uniform, 25 %, lfu, prefetch router"
    llama_row "$skw" "skew $SKEW" "skew $SKEW, 25 %, lfu, prefetch router"
elif command -v llama-cli >/dev/null 2>&1; then
    echo "llama.cpp: llama-cli found but not llama-bench; the >= 10x comparison is not measured"
else
    echo "llama.cpp: not installed (no llama-bench on PATH); the >= 10x comparison is not measured"
fi
echo "(medians of $N_RUNS runs, rows alternated; $N_GEN tokens, --temp $TEMP -s $SEED, -t $THREADS; hit % in decode;" \
    "bound t/s = median disk bandwidth / GB read per token; 'of bound' from strata's end line, against its round's" \
    "disk measurement; disk busy: the share of decode time with a read in progress)"
