#!/bin/sh
# Issue 14 (thread scaling): prompt and decode tok/s of one model at 1, 2,
# 4, 8 and 16 threads (those above the machine's usable CPUs are left out),
# and decode's fraction of the RAM bandwidth (weight bytes per token x
# tok/s / `detect --measure`'s all-core read rate, measured once first),
# with --stats' profile of a decode token: time in the threads' parallel
# jobs, how much of it they worked, and the serial time outside them (what
# keeps many threads from scaling: the serial part does not shrink, and
# the working share falls when jobs are too short or uneven for the
# threads).
# Meant for a machine larger than the 2-core one the suite runs on; about
# 2-3 minutes with the defaults on 2 cores (a 1B Q4_K_M model, a prompt of
# about 256 tokens, 32 decoded tokens, one run per thread count), less on
# more cores. Not part of `make bench`; run it as `make bench-threads` or
#   sh bench/threads.sh                 (MODEL=path.gguf: another model;
#                                        TYPE=q8_0, PRESET=7b: another synth;
#                                        RUNS=3: medians of 3 rounds, each
#                                        round over every thread count;
#                                        LLAMA_BENCH=path/llama-bench: llama.cpp
#                                        on the same file, prompt and decode,
#                                        at each thread count too)
# Runs alternate between thread counts within a round, so drift of a busy
# machine spreads over all of them.
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh
RUNS=${RUNS:-1}
PROMPT_WORDS=${PROMPT_WORDS:-160}
GEN=${GEN:-32}
PRESET=${PRESET:-1b}
TYPE=${TYPE:-q4_k_m}
MODEL=${MODEL:-$(synth "$PRESET-$TYPE" --preset "$PRESET" --type "$TYPE" --seed 1)}

cpus=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)
counts=""
for t in 1 2 4 8 16; do
    if [ "$t" -le "$cpus" ]; then counts="$counts $t"; fi
done

measure "$MODEL"
per_token=$(per_token_bytes "$MODEL")
prompt=$(prompt_words "$PROMPT_WORDS")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for r in $(seq "$RUNS"); do
    for t in $counts; do
        out=$("$STRATA" run -m "$MODEL" -p "$prompt" -n "$GEN" --temp 0 --ignore-eos -c 1024 -t "$t" --gpu none \
            --stats 2>&1 >/dev/null)
        echo "$out" | prompt_tps >> "$tmp/p$t"
        echo "$out" | gen_tps >> "$tmp/d$t"
        # the --stats profile line: ms per token in the threads' jobs, the
        # share of that they worked, ms outside them on one thread
        echo "$out" | sed -n 's/.*parallel jobs, \([0-9.]*\) ms in them.*/\1/p' >> "$tmp/j$t"
        echo "$out" | sed -n 's/.*(threads working \([0-9.]*\) % of that).*/\1/p' >> "$tmp/w$t"
        echo "$out" | sed -n 's/.*), \([0-9.]*\) ms outside them.*/\1/p' >> "$tmp/s$t"
        echo "$out" | sed -n 's/.*prompt \([0-9]*\) tokens.*/\1/p' > "$tmp/n"
        if [ -n "${LLAMA_BENCH:-}" ]; then # llama.cpp on the same file, prompt and decode alike
            "$LLAMA_BENCH" -m "$MODEL" -p "$(cat "$tmp/n")" -n "$GEN" -t "$t" -r 1 -o csv > "$tmp/llama" 2>/dev/null || true
            llama_ts "$tmp/llama" pp >> "$tmp/lp$t"
            llama_ts "$tmp/llama" tg >> "$tmp/ld$t"
        fi
    done
done

printf '%s: %s CPUs, RAM %.1f GB/s (all cores), %.3f GB of weights per token, prompt %s tokens\n' \
    "$(basename "$MODEL")" "$cpus" "$(awk -v b="$RAM_BW" 'BEGIN{print b/1e9}')" \
    "$(awk -v b="$per_token" 'BEGIN{print b/1e9}')" "$(cat "$tmp/n")"
printf '%8s %10s %10s %8s %14s %12s %10s %12s %12s %12s\n' threads prompt/s decode/s "RAM use" "decode vs 1t" \
    "jobs ms/tok" "working %" "serial ms" "llama pp/s" "llama tg/s"
d1=""
for t in $counts; do
    p=$(median < "$tmp/p$t")
    d=$(median < "$tmp/d$t")
    [ -n "$d1" ] || d1=$d
    lp=-; ld=-
    if [ -s "$tmp/lp$t" ]; then lp=$(grep . "$tmp/lp$t" | median); ld=$(grep . "$tmp/ld$t" | median); fi
    printf '%8s %10.1f %10.2f %8.2f %14.2f %12.2f %10.0f %12.2f %12s %12s\n' "$t" "$p" "$d" \
        "$(awk -v b="$per_token" -v d="$d" -v bw="$RAM_BW" 'BEGIN { print (bw > 0 ? b * d / bw : 0) }')" \
        "$(awk -v d="$d" -v o="$d1" 'BEGIN { print (o > 0 ? d / o : 0) }')" \
        "$(median < "$tmp/j$t")" "$(median < "$tmp/w$t")" "$(median < "$tmp/s$t")" "${lp:--}" "${ld:--}"
done
echo "(medians of $RUNS round(s); targets: decode RAM use >= 0.7 at 2 threads, >= 0.6 at 16;"
echo " per decode token, from --stats: ms in the threads' parallel jobs, the share of that time they worked"
echo " (the rest: waking, imbalance, joining), and serial ms outside the jobs on one thread)"
