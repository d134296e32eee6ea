#!/bin/sh
# Issue 6: plan, then run, for one model under three budgets (all resident,
# model 2x the budget, 4x the budget). Reports predicted vs measured decode
# tok/s (target within +-15 %) and predicted memory vs the run's accounted
# memory and real peak RSS (target within +-5 %).
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh
RUNS=${RUNS:-3}
model=$(synth plan-32x1024-q4_k_m --n-embd 1024 --n-ff 2816 --n-layers 32 --n-heads 8 --n-kv-heads 4 \
    --vocab 2000 --ctx 128 --type q4_k_m --seed 5)
size=$(stat -c %s "$model")
measure "$model"
printf '%-10s %9s %9s %9s %7s | %9s %9s %7s %9s\n' budget "pred t/s" "meas t/s" ratio "" "pred MiB" "acct MiB" ratio "RSS MiB"
for div in 0 2 4; do
    if [ "$div" = 0 ]; then mem=$((size * 2)); label="resident"; else mem=$((size / div)); label="1/$div"; fi
    pj=$("$STRATA" plan "$model" --mem "$mem" -c 128 --json)
    pred=$(echo "$pj" | json_num decode_tokens_per_s)
    # predicted memory: RAM weights (incl. slots) + KV + buffers + overhead
    ram=$(echo "$pj" | grep -m 1 -A4 '"ram": {' | tail -n 4 | sed 's/[^0-9]//g' | awk '{ s += $1 } END { print s }')
    d=""; a=""; r=""
    for i in $(seq "$RUNS"); do
        out=$("$STRATA" run -m "$model" --mem "$mem" -c 128 -p "Once upon a time" -n 24 --temp 0 2>&1 >/dev/null)
        d="$d $(echo "$out" | gen_tps)"
        a="$a $(echo "$out" | accounted)"
        r="$r $(echo "$out" | peak_rss)"
    done
    tps=$(echo "$d" | tr ' ' '\n' | grep . | median)
    acct=$(echo "$a" | tr ' ' '\n' | grep . | median)
    rss=$(echo "$r" | tr ' ' '\n' | grep . | median)
    printf '%-10s %9.2f %9.2f %9.2f %7s | %9.1f %9.1f %7.2f %9.1f\n' "$label" "$pred" "$tps" \
        "$(awk -v a="$tps" -v b="$pred" 'BEGIN{print a/b}')" "" "$(awk -v m="$ram" 'BEGIN{print m/2^20}')" "$acct" \
        "$(awk -v a="$acct" -v m="$ram" 'BEGIN{print a*2^20/m}')" "$rss"
done
echo "(model $(awk -v s="$size" 'BEGIN{printf "%.0f", s/2^20}') MiB; medians of $RUNS runs; ratio = measured / predicted)"
