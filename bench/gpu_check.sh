#!/usr/bin/env bash
# GPU check (issue #11, build item 4): everything the first GPU machine should measure, in one
# run of under 5 minutes that installs nothing.
#
#   bash bench/gpu_check.sh                 # on the GPU machine (CUDA device 0)
#   bash bench/gpu_check.sh --cpu-dry-run   # the same steps on CPU at tiny sizes (2-4 min)
#
# Steps (each under its own `timeout`, all capped by one overall budget; a failed or timed-out
# step is recorded and the next one runs):
#   preflight     torch / CUDA / GPU / pykeops / snakemake found, nvidia-smi (bench/gpu_check.py)
#   keops_warmup  first pykeops import and use on the device (nvrtc build on CUDA), compiles the
#                 Cauchy and Vandermonde reductions the next steps use, checks them against torch
#   data_prep     in the background from the start, CPU only: the synthetic cohort up to what
#                 pre-training reads (GPU: the default cohort of config.yaml, 1,200 subjects;
#                 dry run: the tiny cohort of .test/config.yaml, 300 subjects)
#   kernel_tests  tests/test_s4.py, test_cauchy.py, test_s4_fastpath.py with S4_TEST_DEVICE=cuda
#                 (keops backend included; fails, never skips, without a GPU)
#   ddp_step      bench/ddp_step.py: stage 1's step on 2 processes (NCCL, half the batch each)
#                 against 1 process, when torch sees 2 GPUs (skipped with a message otherwise;
#                 dry run: gloo on CPU at a tiny size)
#   bench_s4      bench/s4.py kernel + train-step sections, naive vs torch vs keops; GPU: the
#                 reference sizes (12 -> 512 channels, 4 bidirectional blocks, N 8,
#                 L 250 / 1000 / 5000 at batch 32 / 16 / 4); dry run: --tiny
#   amp_step      bench/train_rate.py --precision bf16 at the default size: the pre-training,
#                 fine-tuning and inference steps in fp32 and in bf16 autocast (train.precision),
#                 and bf16's speed against fp32 (runs while data_prep finishes)
#   bench_loader  bench/loader.py briefly: the training loader's samples/s with 0 / 2 / 4 workers
#                 on its own synthetic shards (GPU: reference batch 32, crop 250, pinned copies
#                 to the GPU; dry run: default batch, with bench/train_rate.py's CPU step)
#   pretrain      `snakemake results/models/pretrain` for 1 epoch with train.device cuda and
#                 model.ecg_encoder.kernel_backend keops (dry run: cpu, same backend; the torch
#                 backend if keops_warmup failed, so the epoch is still measured)
# then ONE markdown table (step, status, seconds, key figure), also in $OUT/summary.md.
#
# Environment (all optional):
#   OUT                  outputs: step logs, preflight.json, kernel_tests.xml, bench_s4.json,
#                        bench_loader.json,
#                        pretrain/ (log, history, model.json, probe.json), summary.md
#                        [/tmp/gpu_check]
#   GPU_CHECK_WORKDIR    Snakemake working directory (synthetic cohort, shards: ~1 GB), kept out
#                        of $OUT; emptied first if an earlier check made it [/tmp/gpu_check_run]
#   GPU_CHECK_BUDGET_S   overall wall budget; a step's timeout never runs past it
#                        [290 on GPU, 420 for the dry run]
#   GPU_CHECK_BACKEND    kernel backend of the pre-training [keops]
#   PYTHON               interpreter with the project installed [python]
# Exit status: 0 when every step is ok, 1 otherwise, 2 on a usage error.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

MODE=cuda
for arg in "$@"; do
    case "$arg" in
    --cpu-dry-run) MODE=cpu ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        echo "gpu_check.sh: unknown argument $arg (try --help)" >&2
        exit 2
        ;;
    esac
done

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-/tmp/gpu_check}
WORK=${GPU_CHECK_WORKDIR:-/tmp/gpu_check_run}
PY=${PYTHON:-python}
BACKEND=${GPU_CHECK_BACKEND:-keops}
NPROC=$(nproc)
if [[ $MODE == cuda ]]; then
    BUDGET=${GPU_CHECK_BUDGET_S:-290}
    # step timeouts (s): preflight, keops warm-up, data prep, kernel tests, bench, pretrain,
    # loader, bf16 step, 2-GPU step
    T_PRE=60 T_WARM=120 T_PREP=240 T_TESTS=120 T_BENCH=170 T_TRAIN=150 T_LOADER=40 T_AMP=40 T_DDP=60
    RESERVE_TRAIN=80 # the bench stops this long (+ T_LOADER + T_AMP) before the budget ends: pre-training's share
    PREP_CORES=$((NPROC > 6 ? NPROC - 4 : 2)) # leave cores to the GPU steps' host side
    TRAIN_CORES=$NPROC
    BENCH_ARGS=(--device cuda --states 8 --lengths 250 1000 5000 --batches 32 16 4
        --steps 5 --warmup 2 --timeout 60)
    AMP_ARGS=(--device cuda --steps 5)
    CONFIGS=("$REPO/config.yaml")
    LOADER_ARGS=(--device cuda --sizes reference --records 4096 --seconds 2 --step-steps 0)
else
    BUDGET=${GPU_CHECK_BUDGET_S:-420}
    T_PRE=60 T_WARM=180 T_PREP=300 T_TESTS=240 T_BENCH=200 T_TRAIN=200 T_LOADER=60 T_AMP=60 T_DDP=120
    RESERVE_TRAIN=80
    PREP_CORES=$NPROC
    TRAIN_CORES=$NPROC
    BENCH_ARGS=(--tiny --device cpu --threads 1 --steps 2 --warmup 1 --timeout 90)
    AMP_ARGS=(--device cpu --threads 1 --steps 1)
    CONFIGS=("$REPO/config.yaml" "$REPO/.test/config.yaml")
    LOADER_ARGS=(--device cpu --sizes default --records 512 --seconds 1 --step-steps 1 --threads 1)
fi

now() { date +%s.%N; }
START=$(now)
DEADLINE=$(awk -v s="$START" -v b="$BUDGET" 'BEGIN { printf "%.3f", s + b }')
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
remaining() { awk -v d="$DEADLINE" -v n="$(now)" 'BEGIN { printf "%d", d - n }'; }
capped() { # a step's timeout: its own, or what is left of the budget if less
    local left
    left=$(remaining)
    if ((left < $1)); then echo "$left"; else echo "$1"; fi
}
status_of() { # rc timeout -> ok | TIMEOUT | FAILED
    case "$1" in
    0) echo ok ;;
    124 | 137) echo "TIMEOUT (>${2}s)" ;;
    *) echo "FAILED (rc $1)" ;;
    esac
}

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
STEPS="$OUT/steps.tsv"
# nothing of an earlier check may pass for this one's results
rm -rf "$OUT/pretrain" "$OUT"/{preflight.json,bench_s4.json,bench_loader.json,ddp_step.json,kernel_tests.xml,summary.md,*.log}
: >"$STEPS"
record() { # step status seconds [note]
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4:-}" >>"$STEPS"
    printf '== %-13s %-18s %7ss  %s\n' "$1" "$2" "$3" "${4:-}"
}
show_tail() { # last lines of a failed step's log
    if [[ -s $1 ]]; then
        echo "   -- last lines of $1:"
        tail -n 15 "$1" | sed 's/^/   | /'
    fi
}

STEP_NOTE="" # a note for the next run_step's row of the table
run_step() { # name timeout command...: runs in the repository, output to $OUT/name.log
    local name=$1 t start rc status note=$STEP_NOTE
    STEP_NOTE=""
    t=$(capped "$2")
    shift 2
    if ((t < 5)); then
        record "$name" "skipped" 0 "budget of ${BUDGET}s spent"
        return 0
    fi
    echo "-- $name (timeout ${t}s): $*"
    start=$(now)
    set +e
    (cd "$REPO" && timeout --kill-after=10 "$t" "$@") >"$OUT/$name.log" 2>&1
    rc=$?
    set -e
    status=$(status_of "$rc" "$t")
    record "$name" "$status" "$(since "$start")" "$note"
    [[ $status == ok ]] || show_tail "$OUT/$name.log"
}

# ---------------------------------------------------------------------------------- setup
if [[ -d $WORK ]]; then
    if [[ -f $WORK/.gpu_check_workdir ]]; then
        rm -rf "$WORK"
    else
        echo "gpu_check.sh: $WORK exists and was not made by this script; set GPU_CHECK_WORKDIR" >&2
        exit 2
    fi
fi
mkdir -p "$WORK"
touch "$WORK/.gpu_check_workdir"
OVERRIDE="$OUT/gpu_check_config.yaml" # pre-training's settings, written before it runs
write_override() { # backend
    cat >"$OVERRIDE" <<EOF
# written by bench/gpu_check.sh: 1 epoch of pre-training on $MODE with the $1 kernel
train:
  device: $MODE
model:
  ecg_encoder:
    kernel_backend: $1
pretrain:
  epochs: 1
EOF
}
# (--configfile and --forcerun take lists: a target must not follow them)
SMK=("$PY" -m snakemake --snakefile "$REPO/Snakefile" --directory "$WORK"
    --configfile "${CONFIGS[@]}")
PREP_TARGETS=(results/shards/index.parquet results/extract/features.parquet
    results/extract/feature_manifest.tsv results/extract/labels.parquet
    results/extract/label_manifest.tsv results/splits/train_ids.parquet
    results/splits/val_ids.parquet)

PREP_PID=""
# shellcheck disable=SC2317  # invoked by the trap
cleanup() { # a killed check does not leave the background data prep running
    if [[ -n $PREP_PID ]] && [[ -f $OUT/.data_prep.pid ]]; then
        kill -TERM "$(cat "$OUT/.data_prep.pid")" 2>/dev/null || true
    fi
}
trap cleanup EXIT

echo "gpu_check.sh: mode $MODE, budget ${BUDGET}s, OUT=$OUT, workdir $WORK, $NPROC CPU cores"

# ------------------------------------------------------------------------------ preflight
echo "-- found:"
if command -v nvidia-smi >/dev/null; then
    timeout 20 nvidia-smi -L || true
else
    echo "nvidia-smi: not found"
fi
run_step preflight "$T_PRE" "$PY" bench/gpu_check.py preflight --device "$MODE" --out "$OUT"
sed 's/^/   /' "$OUT/preflight.log" 2>/dev/null || true
HAVE_DEVICE=1
if [[ $MODE == cuda ]] && ! grep -q '"cuda_available": true' "$OUT/preflight.json" 2>/dev/null; then
    HAVE_DEVICE=0
fi

# ------------------------------------------------------------ data prep (background, CPU)
start_prep() {
    local t
    t=$(capped "$T_PREP")
    PREP_T=$t
    echo "-- data_prep (background, timeout ${t}s, $PREP_CORES cores)"
    rm -f "$OUT/.data_prep.rc" "$OUT/.data_prep.pid"
    (
        set +e
        cd "$REPO"
        timeout --kill-after=10 "$t" "${SMK[@]}" --cores "$PREP_CORES" "${PREP_TARGETS[@]}" \
            >"$OUT/data_prep.log" 2>&1 &
        echo $! >"$OUT/.data_prep.pid"
        wait $!
        echo "$? $(now)" >"$OUT/.data_prep.rc"
    ) &
    PREP_PID=$!
    PREP_START=$(now)
}
finish_prep() { # wait for the background prep and record it; returns 1 unless ok
    local rc end status
    [[ -n $PREP_PID ]] || return 1
    if ! [[ -f $OUT/.data_prep.rc ]]; then echo "-- waiting for data_prep"; fi
    wait "$PREP_PID" || true
    PREP_PID=""
    [[ -f $OUT/.data_prep.rc ]] || echo "1 $(now)" >"$OUT/.data_prep.rc"
    read -r rc end <"$OUT/.data_prep.rc"
    status=$(status_of "$rc" "$PREP_T")
    record data_prep "$status" "$(awk -v a="$PREP_START" -v b="$end" 'BEGIN { printf "%.1f", b - a }')" \
        "$PREP_CORES cores, in the background"
    if [[ $status != ok ]]; then
        show_tail "$OUT/data_prep.log"
        return 1
    fi
}
if ((HAVE_DEVICE)); then start_prep; fi

# --------------------------------------------------------------------------- GPU steps
run_step keops_warmup "$T_WARM" "$PY" bench/gpu_check.py keops-warmup --device "$MODE"
export S4_TEST_DEVICE=$MODE
run_step kernel_tests "$T_TESTS" "$PY" -m pytest -q -p no:cacheprovider \
    --junitxml="$OUT/kernel_tests.xml" tests/test_s4.py tests/test_cauchy.py tests/test_s4_fastpath.py
DDP_ARGS=(--device "$MODE" --json "$OUT/ddp_step.json")
[[ $MODE == cuda ]] || DDP_ARGS+=(--tiny)
if ((HAVE_DEVICE)) && [[ $MODE == cpu ]] || "$PY" -c 'import sys, torch; sys.exit(torch.cuda.device_count() < 2)' 2>/dev/null; then
    run_step ddp_step "$T_DDP" "$PY" bench/ddp_step.py "${DDP_ARGS[@]}"
else
    echo "-- ddp_step: skipped, fewer than 2 CUDA devices"
    record ddp_step skipped 0 "fewer than 2 CUDA devices"
fi
if ((HAVE_DEVICE)); then
    if ! [[ -f $OUT/.data_prep.rc ]]; then STEP_NOTE="data_prep still running at the start"; fi
    T=$(($(remaining) - RESERVE_TRAIN - T_LOADER - T_AMP))
    run_step bench_s4 "$((T < T_BENCH ? T : T_BENCH))" "$PY" bench/s4.py --sections kernel train \
        --backends naive torch keops "${BENCH_ARGS[@]}" --json "$OUT/bench_s4.json"
    T=$(($(remaining) - RESERVE_TRAIN - T_LOADER))
    run_step amp_step "$((T < T_AMP ? T : T_AMP))" "$PY" bench/train_rate.py --sizes default \
        --precision bf16 "${AMP_ARGS[@]}"
    if ! [[ -f $OUT/.data_prep.rc ]]; then STEP_NOTE="data_prep still running (shares the CPUs)"; fi
    T=$(($(remaining) - RESERVE_TRAIN))
    run_step bench_loader "$((T < T_LOADER ? T : T_LOADER))" "$PY" bench/loader.py --crops 250 \
        "${LOADER_ARGS[@]}" --json "$OUT/bench_loader.json"
    if finish_prep; then
        TRAIN_BACKEND=$BACKEND
        if [[ $BACKEND == keops ]] && ! grep -q $'^keops_warmup\tok' "$STEPS"; then
            TRAIN_BACKEND=torch # still measure the epoch when KeOps is broken
        fi
        write_override "$TRAIN_BACKEND"
        STEP_NOTE="device $MODE, kernel_backend $TRAIN_BACKEND"
        [[ $TRAIN_BACKEND == "$BACKEND" ]] || STEP_NOTE+=" (keops_warmup failed)"
        run_step pretrain "$T_TRAIN" "${SMK[@]}" "$OVERRIDE" --forcerun pretrain \
            --cores "$TRAIN_CORES" results/models/pretrain
        mkdir -p "$OUT/pretrain"
        for f in logs/pretrain.log benchmarks/pretrain.tsv models/pretrain/history.tsv \
            models/pretrain/model.json models/pretrain/probe.json; do
            if [[ -f $WORK/results/$f ]]; then cp "$WORK/results/$f" "$OUT/pretrain/"; fi
        done
    else
        record pretrain skipped 0 "data_prep did not succeed"
    fi
else
    record bench_s4 skipped 0 "torch sees no CUDA device"
    record amp_step skipped 0 "torch sees no CUDA device"
    record bench_loader skipped 0 "torch sees no CUDA device"
    record pretrain skipped 0 "torch sees no CUDA device"
fi

# -------------------------------------------------------------------------------- summary
echo
TITLE="GPU check on cuda"
[[ $MODE == cuda ]] || TITLE="GPU check, CPU dry run"
echo "## $TITLE ($(date -u '+%Y-%m-%d %H:%M UTC'), $(since "$START") s in all)"
echo
set +e
"$PY" "$REPO/bench/gpu_check.py" summary --out "$OUT" --workdir "$WORK"
rc=$?
set -e
echo
echo "outputs: $OUT (summary.md, step logs)"
exit "$rc"
