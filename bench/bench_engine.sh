#!/bin/sh
# Issue 4: CPU engine speed on 1B-shaped Q4_K_M and Q8_0 models: prompt
# tok/s (a prompt of about 512 tokens: 326 words of the synthetic vocabulary;
# the table shows the exact count), decode tok/s of the 32 tokens that
# follow it, and decode bandwidth utilization = weight bytes read per token
# x tok/s / RAM bandwidth (the median of a measurement next to each run:
# this machine's bandwidth moves between minutes).
# Issue 14: prompt tok/s against llama.cpp's pp512 on the same file (target
# >= 1.2x): measured when LLAMA_BENCH names a llama-bench binary (run with
# THREADS threads, default 2, as strata is), else the figures issue 14
# measured on the 2-core AVX-512 machine kind (its quiet run: 113.3 tok/s
# for Q4_K_M, 100.8 for Q8_0); the column says which. Measured, it also
# gives llama.cpp's decode tok/s (32 tokens at the same context depth:
# llama-bench -d) next to strata's. On a Debian
# release without a llama.cpp package, bench/llama_sid.sh unpacks sid's.
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh
RUNS=${RUNS:-3}
THREADS=${THREADS:-2}

# llama_pp512 MODEL TYPE DEPTH: llama.cpp's prompt tok/s, where it comes
# from, and its decode tok/s (32 tokens after DEPTH tokens of context, as
# strata's follow its prompt; "-" unless measured)
llama_pp512() {
    if [ -n "${LLAMA_BENCH:-}" ]; then
        "$LLAMA_BENCH" -m "$1" -p 512 -n 0 -t "$THREADS" -o csv > "$tmp" 2>/dev/null || true
        pp=$(llama_ts "$tmp" pp)
        "$LLAMA_BENCH" -m "$1" -p 0 -n 32 -d "$3" -t "$THREADS" -o csv > "$tmp" 2>/dev/null || true
        echo "$pp measured $(llama_ts "$tmp" tg)"
    else
        case $2 in q4_k_m) echo "113.3 issue-14 -" ;; q8_0) echo "100.8 issue-14 -" ;; *) echo "0 none -" ;; esac
    fi
}
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT

printf '%-10s %7s %10s %10s %12s %10s %8s %18s %8s %10s %8s\n' model prompt prompt/s decode/s "GB/token" "RAM GB/s" util \
    "llama.cpp pp512" "x llama" "llama tg" "x llama"
for type in q4_k_m q8_0; do
    model=$(synth "1b-$type" --preset 1b --type "$type" --seed 1)
    per_token=$(per_token_bytes "$model")
    prompt=$(prompt_words 326)
    p=""; d=""; n=""; bw=""
    for r in $(seq "$RUNS"); do
        measure "$model"
        bw="$bw $RAM_BW"
        out=$("$STRATA" run -m "$model" -p "$prompt" -n 32 --temp 0 --seed "$r" -c 1024 -t "$THREADS" 2>&1 >/dev/null)
        p="$p $(echo "$out" | prompt_tps)"
        n=$(echo "$out" | sed -n 's/.*prompt \([0-9]*\) tokens.*/\1/p')
        d="$d $(echo "$out" | gen_tps)"
    done
    pm=$(echo "$p" | tr ' ' '\n' | grep . | median)
    dm=$(echo "$d" | tr ' ' '\n' | grep . | median)
    RAM_BW=$(echo "$bw" | tr ' ' '\n' | grep . | median)
    util=$(awk -v b="$per_token" -v t="$dm" -v bw="$RAM_BW" 'BEGIN { printf "%.2f", b * t / bw }')
    # shellcheck disable=SC2046 # three words: the figure, its source, llama's decode
    set -- $(llama_pp512 "$model" "$type" "$n")
    vs=$(awk -v p="$pm" -v l="$1" 'BEGIN { if (l > 0) printf "%.2f", p / l; else print "-" }')
    dvs=$(awk -v p="$dm" -v l="$3" 'BEGIN { if (l > 0) printf "%.2f", p / l; else print "-" }')
    printf '%-10s %7s %10.1f %10.2f %12.3f %10.1f %8s %18s %8s %10s %8s\n' "$type" "$n" "$pm" "$dm" \
        "$(awk -v b="$per_token" 'BEGIN{print b/1e9}')" "$(awk -v b="$RAM_BW" 'BEGIN{print b/1e9}')" "$util" \
        "$(printf '%.1f' "$1") ($2)" "$vs" "$(awk -v l="$3" 'BEGIN { if (l > 0) printf "%.2f", l; else print "-" }')" "$dvs"
done
echo "(medians of $RUNS runs, $THREADS threads; utilization target >= 0.7; prompt / llama.cpp pp512 target >= 1.2;"
echo " llama tg: llama.cpp's decode of 32 tokens after as many tokens of context as strata's prompt, when measured)"
