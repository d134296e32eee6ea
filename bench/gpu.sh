#!/bin/sh
# Issue 12: the GPU tier (`make bench-gpu`; not part of `make bench`). Synthesizes 7B- and 13B-shaped
# Q4_K_M models, then prints one table:
#   - all layers in VRAM: decode tok/s (128 tokens), prefill tok/s (a prompt
#     of about 512 tokens, in batches of 256, and for the 7B also of 512:
#     the tiled matrix-matrix path) and the weight bytes read per second in
#     decode;
#   - 13B with --gpu-mem 4G: the layers that fit in VRAM, the rest on the
#     CPU; the same with the rest streamed from RAM to the GPU every token
#     (--gpu-stream 2: two staging buffers, a layer's copy overlapping the
#     previous layer's compute); against the CPU alone (--gpu none);
#   - CPU decode of the 7B model at 8 threads and at every core (issue 14's
#     scaling), and the machine's RAM bandwidth;
#   - `strata batch` of 1 and 16 sequences on the 7B model in VRAM
#     (aggregate decode tok/s: issue 13 on the GPU);
# then what one decoded token costs the GPU path: dispatches, pipeline
# barriers, push-constant updates, copies recorded in the command buffer,
# queue submissions and host waits (STRATA_VK_STATS=1), so a GPU number can
# be read against the launch overhead.
# GPU=N picks the Vulkan device (default auto); QUICK=1 is the reduced form
# CI runs on lavapipe (a tiny model: a smoke test, not GPU numbers).
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh
GPU=${GPU:-auto}
QUICK=${QUICK:-0}
COUNTS=""

# row NAME MODEL ARGS...: decode and prefill of one configuration (N_DEC
# tokens decoded: N_GEN, or N_GEN_GPU on the GPU rows)
row() {
    name=$1; m=$2; shift 2
    n=$N_GEN
    case "$*" in *"--gpu none"*) ;; *) n=$N_GEN_GPU ;; esac
    out=$(STRATA_VK_STATS=1 "$STRATA" run -m "$m" -p "Once upon a time" -n "$n" --temp 0 -c 1024 "$@" 2>&1 >/dev/null) ||
        { echo "$name: failed: $out" | tail -n 3; return 0; }
    gpu=$(echo "$out" | sed -n 's/^strata: GPU [^:]*: \(.*\) (.*/\1/p' | sed 's/ in VRAM$//; s/ on the GPU, \([0-9]*\) of the groups streamed.*/, \1 streamed/' | head -n 1)
    d=$(echo "$out" | gen_tps)
    c=$(echo "$out" | sed -n 's/^strata: Vulkan decode: [0-9]* tokens; per token: //p' | head -n 1)
    [ -n "$c" ] && COUNTS="$COUNTS$(printf '  %-26s %s' "$name" "$c")
"
    p=$("$STRATA" run -m "$m" -p "$PROMPT" -n 1 --temp 0 -c 1024 "$@" 2>&1 >/dev/null | prompt_tps)
    b=$(per_token_bytes "$m")
    printf '%-26s %-28s %10s %10s %10.1f\n' "$name" "${gpu:-cpu}" "$d" "$p" \
        "$(awk -v b="$b" -v t="$d" 'BEGIN{print b*t/1e9}')"
}

if [ "$QUICK" = 1 ]; then
    m7=$(synth tiny-q4_k_m --preset tiny --type q4_k_m --seed 1); m13=$m7
    N_GEN=8; N_GEN_GPU=8; PROMPT=$(prompt_words 40); MIX_MEM=7M
else
    m7=$(synth 7b-q4_k_m --preset 7b --type q4_k_m --seed 1)
    m13=$(synth 13b-q4_k_m --preset 13b --type q4_k_m --seed 1)
    N_GEN=64; N_GEN_GPU=128; PROMPT=$(prompt_words 326); MIX_MEM=4G
fi
"$STRATA" detect 2>&1 | grep -iE 'gpu|vulkan' | head -n 4 || true
# a GPU idles at a low clock: one short run first, so the first row is not the slow start
"$STRATA" run -m "$m7" -p "Once upon a time" -n 16 --temp 0 -c 1024 --gpu "$GPU" >/dev/null 2>&1 || true
printf '%-26s %-28s %10s %10s %10s\n' configuration "GPU layers" "decode/s" "prefill/s" "GB/s"
row "7B all in VRAM" "$m7" --gpu "$GPU"
row "7B all in VRAM, batch 512" "$m7" --gpu "$GPU" -b 512
row "13B all in VRAM" "$m13" --gpu "$GPU"
row "13B --gpu-mem $MIX_MEM" "$m13" --gpu "$GPU" --gpu-mem "$MIX_MEM"
row "13B --gpu-mem $MIX_MEM, streamed" "$m13" --gpu "$GPU" --gpu-mem "$MIX_MEM" --gpu-stream 2
row "13B CPU only" "$m13" --gpu none
cores=$(nproc)
row "7B CPU, 8 threads" "$m7" --gpu none -t 8
row "7B CPU, $cores threads" "$m7" --gpu none -t "$cores"
measure "$m7"
echo "(RAM $(awk -v b="$RAM_BW" 'BEGIN{printf "%.1f", b/1e9}') GB/s measured; GB/s = weight bytes per token x decode tok/s)"
# Many sequences in VRAM (issue 13): aggregate decode of `strata batch` at
# -np 1 and 16 (one prompt per sequence, N_GEN_GPU tokens each)
for np in 1 16; do
    i=0
    while [ "$i" -lt "$np" ]; do echo "$(prompt_words 8) story $i"; i=$((i + 1)); done > "$BENCH_DIR/gpu-prompts$np"
    agg=$("$STRATA" batch -m "$m7" -f "$BENCH_DIR/gpu-prompts$np" -np "$np" -n "$N_GEN_GPU" --temp 0 --ignore-eos \
        --gpu "$GPU" -o /dev/null 2>&1 | sed -n 's/.*decode \([0-9.]*\) tok\/s aggregate.*/\1/p' | head -n 1)
    printf '%-26s %-28s %10s\n' "7B in VRAM, batch -np $np" "aggregate decode/s" "${agg:-failed}"
done
if [ -n "$COUNTS" ]; then
    echo "GPU work per decoded token (resident layers in one command buffer per token; a streamed layer adds a submission):"
    printf '%s' "$COUNTS"
fi
