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
#   - the planner's plans for the 13B with 4 GiB of VRAM (`plan --hw` on this
#     machine's measured profile, its VRAM budget set to 4 GiB; prompt
#     batches of 512), run with `run --plan`: its mixed plan (layers resident,
#     streamed over the link, on the CPU), its per-phase plan (decoded on the
#     CPU, prompts streamed to the GPU) and its choice when that is neither
#     (a what-if choice: "no run" when the engine cannot run it yet), each
#     measured against the plan's predicted decode and prefill tok/s;
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
    PLAN_VRAM=270000000; PLAN_CTX=512; N_PLAN_GEN=8 # the planner keeps 256 MiB for itself: room for a layer or two
else
    m7=$(synth 7b-q4_k_m --preset 7b --type q4_k_m --seed 1)
    m13=$(synth 13b-q4_k_m --preset 13b --type q4_k_m --seed 1)
    N_GEN=64; N_GEN_GPU=128; PROMPT=$(prompt_words 326); MIX_MEM=4G
    PLAN_VRAM=4294967296; PLAN_CTX=1024; N_PLAN_GEN=32 # the plans' rows: up to 6 runs of the 13B; the whole under 5 min
fi
"$STRATA" detect 2>&1 | grep -iE 'gpu|vulkan' | head -n 4 || true
# a GPU idles at a low clock: one short run first, so the first row is not the slow start
"$STRATA" run -m "$m7" -p "Once upon a time" -n 16 --temp 0 -c 1024 --gpu "$GPU" -ngl 9999 >/dev/null 2>&1 || true
printf '%-26s %-28s %10s %10s %10s\n' configuration "GPU layers" "decode/s" "prefill/s" "GB/s"
# -ngl $ALL: the engine's own placement (every layer that fits, from the first), not the plan's (run's plan
# would choose for itself, and takes lavapipe for no GPU)
ALL=9999
row "7B all in VRAM" "$m7" --gpu "$GPU" -ngl $ALL
row "7B all in VRAM, batch 512" "$m7" --gpu "$GPU" -b 512 -ngl $ALL
row "13B all in VRAM" "$m13" --gpu "$GPU" -ngl $ALL
row "13B --gpu-mem $MIX_MEM" "$m13" --gpu "$GPU" --gpu-mem "$MIX_MEM" -ngl $ALL
row "13B --gpu-mem $MIX_MEM, streamed" "$m13" --gpu "$GPU" --gpu-mem "$MIX_MEM" --gpu-stream 2
row "13B CPU only" "$m13" --gpu none
cores=$(nproc)
row "7B CPU, 8 threads" "$m7" --gpu none -t 8
row "7B CPU, $cores threads" "$m7" --gpu none -t "$cores"
# the machine's profile (detect --measure: RAM, disk, CPU, and the GPUs' copy,
# read and prompt-batch rates), the planner's input below
PROFILE=$BENCH_DIR/gpu-profile.json
"$STRATA" detect --measure --path "$m13" --json > "$PROFILE"
RAM_BW=$(json_num ram_read_all_bytes_per_s < "$PROFILE")
echo "(RAM $(awk -v b="$RAM_BW" 'BEGIN{printf "%.1f", b/1e9}') GB/s measured; GB/s = weight bytes per token x decode tok/s)"
# Many sequences in VRAM (issue 13): aggregate decode of `strata batch` at
# -np 1 and 16 (one prompt per sequence, N_GEN_GPU tokens each)
for np in 1 16; do
    i=0
    while [ "$i" -lt "$np" ]; do echo "$(prompt_words 8) story $i"; i=$((i + 1)); done > "$BENCH_DIR/gpu-prompts$np"
    agg=$("$STRATA" batch -m "$m7" -f "$BENCH_DIR/gpu-prompts$np" -np "$np" -n "$N_GEN_GPU" --temp 0 --ignore-eos \
        --gpu "$GPU" -ngl $ALL -o /dev/null 2>&1 | sed -n 's/.*decode \([0-9.]*\) tok\/s aggregate.*/\1/p' | head -n 1)
    printf '%-26s %-28s %10s\n' "7B in VRAM, batch -np $np" "aggregate decode/s" "${agg:-failed}"
done
# The planner's plans for the 13B with PLAN_VRAM bytes of VRAM, made from
# the profile above (its VRAM budget set to that) for prompt batches of 512.
# QUICK: lavapipe is no GPU to the planner (a software device) and slower
# than the CPU, so the profile calls it a discrete GPU with rates that make
# GPU sites pay (1 TB/s, 100 TFLOP/s): the plans run, the numbers mean nothing.
PLAN_PROFILE=$BENCH_DIR/gpu-plan-profile.json
edit="s/\"vram_budget_bytes\": [^,]*/\"vram_budget_bytes\": $PLAN_VRAM/"
[ "$QUICK" = 1 ] && edit="$edit; s/\"type\": \"cpu\"/\"type\": \"discrete\"/;
    s/\"\(vram\|matvec_q4_k\)_bytes_per_s\": [^,]*/\"\1_bytes_per_s\": 1e12/;
    s/\"matmul_q4_k_flop_per_s\": [^,]*/\"matmul_q4_k_flop_per_s\": 1e14/"
sed "$edit" "$PROFILE" > "$PLAN_PROFILE"
"$STRATA" plan "$m13" --hw "$PLAN_PROFILE" --batch 512 -c "$PLAN_CTX" --json > "$BENCH_DIR/gpu-plans.json" 2>/dev/null || true
# plan_run PLAN_FILE: decode (N_PLAN_GEN tokens) and a prompt in one batch of
# 512 with the saved plan; sets d and p (tok/s; empty when the run failed)
plan_run() {
    mem=""; [ "$QUICK" = 1 ] || mem="--gpu-mem $MIX_MEM"
    # shellcheck disable=SC2086
    d=$("$STRATA" run -m "$m13" --plan "$1" --gpu "$GPU" $mem -p "Once upon a time" -n "$N_PLAN_GEN" --temp 0 -b 512 \
        2>&1 >/dev/null | gen_tps)
    # shellcheck disable=SC2086
    p=$("$STRATA" run -m "$m13" --plan "$1" --gpu "$GPU" $mem -p "$PROMPT" -n 1 --temp 0 -b 512 \
        2>&1 >/dev/null | prompt_tps)
}
# plan_row NAME WANT [SEEN...]: the plan bench/plan_pick.awk picks (WANT:
# a label, "phase" or "chosen"; no row when it is one of the SEEN files),
# run (plan_run) against the plan's predictions; its groups' sites
# (resident/link/CPU) decoding, then for prompts, and its label
plan_row() {
    name=$1; f=$BENCH_DIR/gpu-plan-$(echo "$2" | tr -cd 'a-z').json
    if ! awk -v want="$2" -f bench/plan_pick.awk "$BENCH_DIR/gpu-plans.json" > "$f"; then
        printf '%-18s %s\n' "$name" "no such plan"; return 0
    fi
    shift 2
    for seen in "$@"; do cmp -s "$f" "$seen" && return 0; done
    if grep -q '"runnable": false' "$f"; then d="no run"; p="(engine)"; else plan_run "$f"; fi
    count() { grep -c "\"$1\": \"$2\"" "$f" || true; }
    pd=$(json_num decode_tokens_per_s < "$f"); pp=$(json_num prefill_tokens_per_s < "$f")
    printf '%-18s %8s %8.1f %9s %9.1f  %s/%s/%s, %s/%s/%s  %s\n' "$name" "${d:-failed}" "${pd:-0}" \
        "${p:-failed}" "${pp:-0}" "$(count site gpu)" "$(count site link)" "$(count site cpu)" \
        "$(count prefill_site gpu)" "$(count prefill_site link)" "$(count prefill_site cpu)" \
        "$(sed -n 's/^ *"label": "\(.*\)",$/\1/p' "$f")"
}
echo "13B plans for $PLAN_VRAM bytes of VRAM (plan --hw, batch 512); measured vs predicted tok/s:"
printf '%-18s %8s %8s %9s %9s  %s\n' plan decode/s pred prefill/s pred "sites res/link/cpu: decode, prompt; label"
plan_row "mixed" "GPU resident + streamed over the link + CPU"
plan_row "per-phase" phase
plan_row "plan --hw choice" chosen "$BENCH_DIR/gpu-plan-gpuresidentstreamedoverthelinkcpu.json" \
    "$BENCH_DIR/gpu-plan-phase.json"
if [ -n "$COUNTS" ]; then
    echo "GPU work per decoded token (resident layers in one command buffer per token; a streamed layer adds a submission):"
    printf '%s' "$COUNTS"
fi
