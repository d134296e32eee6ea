#!/bin/sh
# The planner's truth (issues 6 and 16): predicted against measured.
#
# Part 1, decode speed at the machine's thread count (what `run` uses: one
# thread per usable physical core; THREADS=N passes -t N to plan and run):
#   - stories260K (the real 260K-parameter model of the fixtures: its time
#     is the engine's fixed per-token and per-layer costs), resident;
#   - the 1B-shaped Q4_K_M model, resident;
#   - the 7B-shaped Q4_K_M model, streamed at --mem = 25 % of its file.
# Targets: measured / predicted within 0.85-1.15 for the 1B and 7B cases,
# within 0.5-2 for stories260K. The prediction is `strata plan --json`'s
# decode_tokens_per_s; the measurement is the decode tok/s of `strata run`
# with the same context and budget (its closing line, "decode X tok/s vs
# Y predicted", which gives two decimals). Runs alternate between
# the cases; each figure is the median of RUNS.
#
# Part 2, memory: a 32 x 1024 Q4_K_M model under three budgets (all
# resident, 2x and 4x the budget); predicted decode and predicted RAM
# against the run's accounted memory and real peak RSS (target +-5 %).
#
# Models: those of bench_engine.sh / bench_stream.sh ($BENCH_DIR), the
# fixture from $STRATA_FIXTURES (default ../shared/fixtures).
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh
RUNS=${RUNS:-3}
THREADS=${THREADS:-}
FIXTURES=${STRATA_FIXTURES:-../shared/fixtures}
CTX=256
t_opt=""
[ -n "$THREADS" ] && t_opt="-t $THREADS"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "?" }'; }

# ---- part 1: decode speed ----
stories="$FIXTURES/stories260K.gguf"
small=$(synth 1b-q4_k_m --preset 1b --type q4_k_m --seed 1)
big=$(synth 7b-q4_k_m --preset 7b --type q4_k_m --seed 1)
big_mem=$(($(stat -c %s "$big") / 4))
cases="1b 7b"
if [ -f "$stories" ]; then cases="stories $cases"
else echo "   SKIPPED stories260K: no $stories (set STRATA_FIXTURES)" >&2; fi

# case_args NAME: the model, budget and generation length of a case
case_args() {
    case $1 in
    stories) echo "$stories -c $CTX -n 128" ;;
    1b) echo "$small -c $CTX -n 32" ;;
    7b) echo "$big -c $CTX --mem $big_mem -n 8" ;;
    esac
}

work=$(mktemp -d "${TMPDIR:-/tmp}/strata-plan-acc.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
for c in $cases; do
    set -- $(case_args "$c")
    model=$1; shift
    # plan's options: all but -n (the generation length)
    popts=$(echo "$*" | sed 's/ -n [0-9]*//')
    # shellcheck disable=SC2086 # option lists are meant to split
    "$STRATA" plan "$model" $popts $t_opt --json > "$work/$c.plan"
done
for i in $(seq "$RUNS"); do
    for c in $cases; do
        set -- $(case_args "$c")
        model=$1; shift
        # shellcheck disable=SC2086
        "$STRATA" run -m "$model" "$@" $t_opt -p "Once upon a time" --temp 0 --ignore-eos 2>&1 >/dev/null |
            decode_tps >> "$work/$c.tps"
    done
done
machine="$(grep -m 1 'model name' /proc/cpuinfo | sed 's/.*: //') ($(nproc) CPUs)"
printf '%-12s %-10s %7s %10s %10s %7s  %s\n' model plan threads "pred t/s" "meas t/s" ratio target
for c in $cases; do
    set -- $(case_args "$c")
    pred=$(json_num decode_tokens_per_s < "$work/$c.plan")
    threads=$(json_num threads < "$work/$c.plan")
    label=$(grep -m 1 -o '"label": "[^"]*"' "$work/$c.plan" | sed 's/.*: "//; s/"$//')
    meas=$(median < "$work/$c.tps")
    case $c in stories) target="0.5-2" ;; *) target="0.85-1.15" ;; esac
    case $label in all*) where=resident ;; *) where=streamed ;; esac
    printf '%-12s %-10s %7s %10.2f %10.2f %7s  %s\n' "$(basename "$1" .gguf)" "$where" "$threads" "$pred" "$meas" \
        "$(ratio "$meas" "$pred")" "$target"
done
echo "(machine: $machine; medians of $RUNS runs, cases alternated; ratio = measured / predicted; context $CTX)"

# ---- part 2: memory ----
model=$(synth plan-32x1024-q4_k_m --n-embd 1024 --n-ff 2816 --n-layers 32 --n-heads 8 --n-kv-heads 4 \
    --vocab 2000 --ctx 128 --type q4_k_m --seed 5)
size=$(stat -c %s "$model")
echo
printf '%-10s %9s %9s %9s %7s | %9s %9s %7s %9s\n' budget "pred t/s" "meas t/s" ratio "" "pred MiB" "acct MiB" ratio "RSS MiB"
for div in 0 2 4; do
    if [ "$div" = 0 ]; then mem=$((size * 2)); label="resident"; else mem=$((size / div)); label="1/$div"; fi
    # shellcheck disable=SC2086
    pj=$("$STRATA" plan "$model" --mem "$mem" -c 128 $t_opt --json)
    pred=$(echo "$pj" | json_num decode_tokens_per_s)
    # predicted memory: RAM weights (incl. slots) + KV + buffers + overhead
    ram=$(echo "$pj" | grep -m 1 -A4 '"ram": {' | tail -n 4 | sed 's/[^0-9]//g' | awk '{ s += $1 } END { print s }')
    d=""; a=""; r=""
    for i in $(seq "$RUNS"); do
        # shellcheck disable=SC2086
        out=$("$STRATA" run -m "$model" --mem "$mem" -c 128 $t_opt -p "Once upon a time" -n 24 --temp 0 2>&1 >/dev/null)
        d="$d $(echo "$out" | gen_tps)"
        a="$a $(echo "$out" | accounted)"
        r="$r $(echo "$out" | peak_rss)"
    done
    tps=$(echo "$d" | tr ' ' '\n' | grep . | median)
    acct=$(echo "$a" | tr ' ' '\n' | grep . | median)
    rss=$(echo "$r" | tr ' ' '\n' | grep . | median)
    printf '%-10s %9.2f %9.2f %9.2f %7s | %9.1f %9.1f %7.2f %9.1f\n' "$label" "$pred" "$tps" \
        "$(ratio "$tps" "$pred")" "" "$(awk -v m="$ram" 'BEGIN{print m/2^20}')" "$acct" \
        "$(awk -v a="$acct" -v m="$ram" 'BEGIN{print a*2^20/m}')" "$rss"
done
echo "(model $(awk -v s="$size" 'BEGIN{printf "%.0f", s/2^20}') MiB; medians of $RUNS runs; ratio = measured / predicted)"
