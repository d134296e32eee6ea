#!/bin/sh
# Issue 12: the GPU tier (`make bench-gpu`; not part of `make bench`). Synthesizes 7B- and 13B-shaped
# Q4_K_M models, then prints one table:
#   - all layers in VRAM: decode tok/s (64 tokens), prefill tok/s (a prompt
#     of about 512 tokens) and the weight bytes read per second in decode;
#   - 13B with --gpu-mem 4G: the layers that fit in VRAM, the rest on the
#     CPU, against the CPU alone (--gpu none);
#   - CPU decode of the 7B model at 8 threads and at every core (issue 14's
#     scaling), and the machine's RAM bandwidth.
# GPU=N picks the Vulkan device (default auto); QUICK=1 is the reduced form
# CI runs on lavapipe (a tiny model: a smoke test, not GPU numbers).
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh
GPU=${GPU:-auto}
QUICK=${QUICK:-0}

# row NAME MODEL ARGS...: decode and prefill of one configuration
row() {
    name=$1; m=$2; shift 2
    out=$("$STRATA" run -m "$m" -p "Once upon a time" -n "$N_GEN" --temp 0 -c 1024 "$@" 2>&1 >/dev/null) ||
        { echo "$name: failed: $out" | tail -n 3; return 0; }
    gpu=$(echo "$out" | sed -n 's/^strata: GPU \(.*\) in VRAM.*/\1/p' | sed 's/^[^:]*: //' | head -n 1)
    d=$(echo "$out" | gen_tps)
    p=$("$STRATA" run -m "$m" -p "$PROMPT" -n 1 --temp 0 -c 1024 "$@" 2>&1 >/dev/null | prompt_tps)
    b=$(per_token_bytes "$m")
    printf '%-26s %-28s %10s %10s %10.1f\n' "$name" "${gpu:-cpu}" "$d" "$p" \
        "$(awk -v b="$b" -v t="$d" 'BEGIN{print b*t/1e9}')"
}

if [ "$QUICK" = 1 ]; then
    m7=$(synth tiny-q4_k_m --preset tiny --type q4_k_m --seed 1); m13=$m7
    N_GEN=8; PROMPT=$(prompt_words 40); MIX_MEM=1M
else
    m7=$(synth 7b-q4_k_m --preset 7b --type q4_k_m --seed 1)
    m13=$(synth 13b-q4_k_m --preset 13b --type q4_k_m --seed 1)
    N_GEN=64; PROMPT=$(prompt_words 326); MIX_MEM=4G
fi
"$STRATA" detect 2>&1 | grep -iE 'gpu|vulkan' | head -n 4 || true
printf '%-26s %-28s %10s %10s %10s\n' configuration "GPU layers" "decode/s" "prefill/s" "GB/s"
row "7B all in VRAM" "$m7" --gpu "$GPU"
row "13B all in VRAM" "$m13" --gpu "$GPU"
row "13B --gpu-mem $MIX_MEM" "$m13" --gpu "$GPU" --gpu-mem "$MIX_MEM"
row "13B CPU only" "$m13" --gpu none
cores=$(nproc)
row "7B CPU, 8 threads" "$m7" --gpu none -t 8
row "7B CPU, $cores threads" "$m7" --gpu none -t "$cores"
measure "$m7"
echo "(RAM $(awk -v b="$RAM_BW" 'BEGIN{printf "%.1f", b/1e9}') GB/s measured; GB/s = weight bytes per token x decode tok/s)"
