#!/bin/sh
# Issue 13: many sequences in one forward pass (`make bench-batch`; `make
# bench` runs it unless BATCH=0). Aggregate decode tok/s of `strata batch`
# at -np 1, 4 and 16 (as many prompts as sequences: one wave) for
#   - the 1B-shaped Q4_K_M model resident (the default budget), and
#   - the 7B-shaped Q4_K_M model streamed at --mem = 25 % of its file, with
#     a q8_0 KV cache (-ctk/-ctv q8_0),
# 2 threads, greedy (--temp 0, --ignore-eos: every sequence generates
# N_GEN tokens). Runs alternate between the batch sizes; each figure is
# the median of N_RUNS. Printed: the aggregate decode tok/s ("decode ...
# tok/s aggregate" of batch's closing line: tokens of decode-only steps per
# second of them), the planner's prediction for the same N (`strata plan
# -np N`), GB read per step, and batch16 / batch1 against the targets
# (streamed 7B >= 10x, resident 1B >= 3x).
# Models are those of bench_engine.sh / bench_stream.sh (synthesized once
# into $BENCH_DIR). Environment: N_RUNS (3), N_GEN (16), THREADS (2),
# CASES ("small big": the 1B and the 7B case; either alone), QUICK=1 (a
# tiny model for both cases: a smoke test of this script, not numbers).
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh
N_RUNS=${N_RUNS:-3}
N_GEN=${N_GEN:-16}
THREADS=${THREADS:-2}
QUICK=${QUICK:-0}
CASES=${CASES:-small big}
SIZES="1 4 16"

if [ "$QUICK" = 1 ]; then
    small=$(synth batch-quick --n-embd 512 --n-ff 1408 --n-layers 8 --n-heads 8 --n-kv-heads 2 --vocab 2000 \
        --ctx 1024 --type q4_k_m --seed 1)
    big=$small
    big_mem=$(($(stat -c %s "$big") / 4 + (24 << 20))) # a quarter of a small file is less than the fixed part
else
    small=$(synth 1b-q4_k_m --preset 1b --type q4_k_m --seed 1)
    big=""; big_mem=0
    case " $CASES " in *" big "*)
        big=$(synth 7b-q4_k_m --preset 7b --type q4_k_m --seed 1)
        big_mem=$(($(stat -c %s "$big") / 4)) ;;
    esac
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/strata-batch.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

# prompts N: a file of N different prompts of about 8 words
for n in $SIZES; do
    i=0
    while [ "$i" -lt "$n" ]; do
        echo "$(prompt_words $((6 + i % 5))) story number $i"
        i=$((i + 1))
    done > "$work/prompts$n"
done

agg_tps() { sed -n 's/.*decode \([0-9.]*\) tok\/s aggregate.*/\1/p' | head -n 1; }
gb_step() { sed -n 's/.*streamed [0-9.]* GB (\([0-9.]*\) GB\/step).*/\1/p' | head -n 1; }

# one CASE N: a run of case CASE (small|big) at -np N; appends to $work/CASE-N
one() {
    if [ "$1" = small ]; then model=$small; flags=""; else model=$big; flags="--mem $big_mem -ctk q8_0 -ctv q8_0"; fi
    # shellcheck disable=SC2086 # flag lists are meant to split
    if out=$("$STRATA" batch -m "$model" -f "$work/prompts$2" -np "$2" -n "$N_GEN" --temp 0 --ignore-eos \
        -t "$THREADS" $flags -o /dev/null 2>&1); then
        echo "$(echo "$out" | agg_tps) $(echo "$out" | gb_step)" >> "$work/$1-$2"
    else
        echo "failed" >> "$work/$1-$2"
        echo "$out" | tail -n 3 >&2
    fi
}

# predicted CASE N: the planner's aggregate tok/s for that run
predicted() {
    if [ "$1" = small ]; then model=$small; flags=""; else model=$big; flags="--mem $big_mem --kv-type q8_0"; fi
    # shellcheck disable=SC2086
    # (-np 1 is a plain plan: its decode speed is the aggregate)
    if [ "$2" = 1 ]; then key=decode_tokens_per_s; else key=aggregate_decode_tokens_per_s; fi
    "$STRATA" plan "$model" -np "$2" -c 32 $flags --json 2>/dev/null | json_num "$key" |
        awk '{ printf "%.2f", $1 }' || true
}

med() {
    if ! grep -qv '^failed' "$work/$1" 2>/dev/null; then echo failed; return; fi
    awk -v c="$2" '$1 != "failed" { print $c }' "$work/$1" | grep . | median
}

for c in $CASES; do
    for r in $(seq "$N_RUNS"); do
        for n in $SIZES; do one "$c" "$n"; done
    done
done

printf '%-32s %4s %12s %12s %10s\n' case "-np" "tok/s" predicted "GB/step"
for c in $CASES; do
    if [ "$c" = small ]; then label="1B resident"; else label="7B streamed, --mem 25 %"; fi
    [ "$QUICK" = 1 ] && label="$label (QUICK)"
    for n in $SIZES; do
        printf '%-32s %4s %12s %12s %10s\n' "$label" "$n" "$(med "$c-$n" 1)" "$(predicted "$c" "$n")" \
            "$(med "$c-$n" 2)"
    done
    awk -v a="$(med "$c-16" 1)" -v b="$(med "$c-1" 1)" -v c="$c" 'BEGIN {
        t = c == "big" ? 10 : 3
        if (a ~ /^[0-9.]+$/ && b > 0) printf "%s: batch 16 / batch 1 = %.2fx (target >= %dx)\n", c == "big" ? "7B streamed" : "1B resident", a / b, t }'
done
echo "(medians of $N_RUNS runs, batch sizes alternated; $N_GEN tokens per sequence, --temp 0 --ignore-eos," \
    "-t $THREADS; 7B: --mem $big_mem bytes, q8_0 KV)"
