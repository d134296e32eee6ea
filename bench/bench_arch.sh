#!/bin/sh
# Issue 10: the generic forward pass must not cost speed.
#  1. A Qwen3-shaped 1B model (per-head Q/K norms, NEOX RoPE) against the
#     llama model of the same shape, in the same run, runs alternated:
#     resident decode weight bandwidth (bytes read per token x tok/s) and,
#     streamed at --mem = 40 % of the file (a 1B model's output matrix and
#     ring need more than 25 %), the fraction of the disk bound.
#     Target: qwen3 within 10 % of llama on both.
#  2. With STRATA_A=path/to/an/older/strata: llama 1B decode tok/s of that
#     binary (A) and of this build (B), alternated (B/A >= 1 expected).
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh
RUNS=${RUNS:-3}
TOKENS=${TOKENS:-32}
STREAM_TOKENS=${STREAM_TOKENS:-4}

decode_tps() { # BIN MODEL [ARGS...]
    bin=$1; m=$2; shift 2
    "$bin" run -m "$m" -p "Once upon a time" -n "$TOKENS" --temp 0 -c 512 "$@" 2>&1 >/dev/null | gen_tps
}

llama=$(synth 1b-q4_k_m --preset 1b --type q4_k_m --seed 1)
qwen3=$(synth 1b-qwen3-q4_k_m --arch qwen3 --preset 1b --type q4_k_m --seed 1)
bl=$(per_token_bytes "$llama"); bq=$(per_token_bytes "$qwen3")
measure "$llama"
dl=""; dq=""; sl=""; sq=""; gl=""; gq=""
for r in $(seq "$RUNS"); do
    dl="$dl $(decode_tps "$STRATA" "$llama")"
    dq="$dq $(decode_tps "$STRATA" "$qwen3")"
    for m in llama qwen3; do
        eval "f=\$$m"
        mem=$(($(stat -c %s "$f") * 2 / 5))
        out=$("$STRATA" run -m "$f" --mem "$mem" -p "Once upon a time" -n "$STREAM_TOKENS" --temp 0 -c 512 2>&1 >/dev/null) ||
            { echo "streamed run failed: $out" >&2; exit 1; }
        if [ "$m" = llama ]; then sl="$sl $(echo "$out" | gen_tps)"; gl="$gl $(echo "$out" | streamed_gb)"
        else sq="$sq $(echo "$out" | gen_tps)"; gq="$gq $(echo "$out" | streamed_gb)"; fi
    done
done
med() { echo "$1" | tr ' ' '\n' | grep . | median; }
dl=$(med "$dl"); dq=$(med "$dq"); sl=$(med "$sl"); sq=$(med "$sq"); gl=$(med "$gl"); gq=$(med "$gq")
printf '%-8s %12s %12s %14s %14s %12s %10s\n' model "GB/token" "decode tok/s" "weights GB/s" "streamed tok/s" "stream GB/tok" "of bound"
for m in llama qwen3; do
    if [ "$m" = llama ]; then b=$bl; d=$dl; s=$sl; g=$gl; else b=$bq; d=$dq; s=$sq; g=$gq; fi
    printf '%-8s %12.3f %12.2f %14.2f %14.3f %12.3f %10.2f\n' "$m" "$(awk -v b="$b" 'BEGIN{print b/1e9}')" "$d" \
        "$(awk -v b="$b" -v t="$d" 'BEGIN{print b*t/1e9}')" "$s" "$g" \
        "$(awk -v t="$s" -v g="$g" -v bw="$DISK_BW" 'BEGIN{ if (g > 0) printf "%.2f", t*g*1e9/bw; else print 0 }')"
done
awk -v bl="$bl" -v bq="$bq" -v dl="$dl" -v dq="$dq" -v sl="$sl" -v sq="$sq" -v gl="$gl" -v gq="$gq" 'BEGIN {
    printf "qwen3/llama: resident weight bandwidth %.2f, streamed fraction of the disk bound %.2f (target 0.90-1.10)\n",
        (bq*dq)/(bl*dl), (gl > 0 && sl > 0) ? (sq*gq)/(sl*gl) : 0 }'
echo "(medians of $RUNS runs; disk $(awk -v b="$DISK_BW" 'BEGIN{printf "%.2f", b/1e9}') GB/s O_DIRECT)"

if [ -n "${STRATA_A:-}" ]; then
    a=""; b=""
    for r in $(seq "$RUNS"); do
        a="$a $(decode_tps "$STRATA_A" "$llama")"
        b="$b $(decode_tps "$STRATA" "$llama")"
    done
    a=$(med "$a"); b=$(med "$b")
    printf 'llama 1B Q4_K_M decode: A (%s) %.2f tok/s, B (this build) %.2f tok/s, B/A %.3f\n' "$STRATA_A" "$a" "$b" \
        "$(awk -v a="$a" -v b="$b" 'BEGIN{print b/a}')"
fi
