#!/usr/bin/env bash
# The GPU figures that fit one task's device budget (15 minutes all told, machine start included),
# as two prepared device calls of at most 10 minutes. Checked end to end on the CPU at toy size:
#   QUICK_CPU_CHECK=1 bash benchmarks/gpu_quick.sh A     (and B; a few minutes each)
#
# 1. Here, once: bash benchmarks/gpu_quick.sh prepare
#    copies the data sets and normflows' wheel (the benchmark peer) into .devcarry/ (git-ignored,
#    about 45 MB; the device machine has no network and ../shared does not travel).
# 2. The device tool's run, carry [".devcarry"], timeout_s 600:
#    TRAIN_S=240 bash benchmarks/gpu_quick.sh A
#                        training throughput vs normflows at batch 128 (float32, bf16 +
#                        channels-last, auto), then Glow on Fashion-MNIST for TRAIN_S seconds of
#                        training (default 420; configs/glow-fashion-mnist-fast.toml, whose
#                        train.speed = "auto" picks bf16 + channels-last + compile-flow on compute
#                        capability >= 8.0 and prints why) and its test bpd (issue 3's target for
#                        420 s: <= 3.00); about TRAIN_S + 3 minutes
#    bash benchmarks/gpu_quick.sh B   ~7 min: throughput at batch 512 and 2048 (+ compile-flow),
#                                     sampling throughput, peak memory for K = 8 ... 64 (reversible),
#                                     CUDA graphs (cuda-graphs) vs eager at batch 128, training and
#                                     sampling
#    TRAIN_S=240 bash benchmarks/gpu_quick.sh C
#                        the trainer's CUDA-graph path end to end (train.cuda_graphs) on the same
#                        run, its test bpd and samples: for a session whose A and B are done
#    On an H200 (2026-12-04) A with TRAIN_S=240 took 343 s and B 395 s: 777 s of the 900 held
#    with the machine's start; A with the default 420 s and B together overrun 15 minutes.
# Results: $OUT/gpu-quick-PART.tgz (one log per step, the bench tables as md + json, the run's eval
# json, report.md and metrics.csv; the device tool returns at most 8 files, hence one archive) and
# $OUT/summary-PART.txt (the last lines of each log; also printed at the end, so the tool's output
# tail holds it), both rewritten after every step, so a part cut short by the device budget still
# returns what it measured. $OUT is the device tool's folder; here it defaults to
# benchmarks/results/gpu-quick.
# The longer runs (25 minutes per data set) stay in benchmarks/gpu_suite.sh.
set -uo pipefail
PART=${1:?"prepare, A or B (see the header of $0)"}
CARRY=${CARRY:-.devcarry}

if [ "$PART" = prepare ]; then
  mkdir -p "$CARRY/data" "$CARRY/whl"
  cp -r ../shared/data/mnist ../shared/data/fashion-mnist "$CARRY/data/"
  # normflows is published as source only: build its pure-Python wheel here
  python3 -m pip wheel -q --no-deps -w "$CARRY/whl" normflows==1.7.3
  du -sh "$CARRY"
  exit 0
fi

OUT=${OUT:-benchmarks/results/gpu-quick}
RES=$(mktemp -d /tmp/gpu-quick-$PART.XXXX)  # everything is written here, then archived into $OUT
RUNS=${RUNS:-/tmp/flowforge-runs}
mkdir -p "$OUT" "$RUNS"
if ls "$CARRY"/whl/*.whl >/dev/null 2>&1 && ! python3 -c "import normflows" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$CARRY"/whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export FLOWFORGE_DATA=${FLOWFORGE_DATA:-$CARRY/data}
FF="python3 -m flowforge.cli"

if [ "${QUICK_CPU_CHECK:-0}" = 1 ]; then  # toy sizes: the script's plumbing, not a measurement
  DEVICE=cpu TRAIN_S=20 MODEL=(--set model.depth=2 --set model.hidden=16) BATCH=(--set train.batch_size=16)
  EXTRA=(--set train.speed=manual --set train.compile=false --set train.coupling_dtype=float32 --set train.valid_examples=200
         --set train.eval_every=20 --set train.checkpoint_every=20 --set train.warmup_steps=10)
  NET=(--depth 2 --hidden 16 --rounds 2 --steps-per-round 1) MEM=(--depths 2 4 --batch 4 --hidden 16)
  B128=16 B512=32 B2048=64 GRAPHS=compile-flow  # CUDA graphs need CUDA: the same compilation without
else
  DEVICE=cuda TRAIN_S=${TRAIN_S:-420} MODEL=() BATCH=() EXTRA=() NET=(--rounds 3 --steps-per-round 10) MEM=()
  B128=128 B512=512 B2048=2048 GRAPHS=cuda-graphs
fi

step() {  # step NAME LIMIT_S COMMAND...: run with a time limit, log to NAME.log, never abort the part
  local name=$1 limit=$2; shift 2
  local start=$(date +%s) rc=0
  echo "== $name (limit ${limit} s): $*"
  timeout -s INT "$limit" "$@" >"$RES/$name.log" 2>&1 || rc=$?
  echo "$name: exit $rc after $(( $(date +%s) - start )) s" | tee -a "$RES/summary.txt"
  grep -v -i "warning\|torch.lu\|lu_factor\|^ *LU, pivots" "$RES/$name.log" | tail -n 4 >>"$RES/summary.txt"
  save  # after every step: a part cut short by the device budget still returns what it measured
}

save() {
  cp "$RES/summary.txt" "$OUT/summary-$PART.txt"
  tar -czf "$OUT/gpu-quick-$PART.tgz" -C "$RES" .
}

bench() {  # bench NAME LIMIT_S BENCH ARGS...
  local name=$1 limit=$2 what=$3; shift 3
  step "$name" "$limit" $FF bench "$what" --device "$DEVICE" --no-progress "${NET[@]}" --out "$RES/$name" "$@"
}

{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  git log -1 --format='commit %H' 2>/dev/null; } >"$RES/summary.txt"

case "$PART" in
  A)
    run="$RUNS/glow-fmnist-${TRAIN_S}s"
    rm -rf "$run"
    # the throughput first: a part cut short by the device budget loses the end of the training run
    bench train-$B128 90 train-throughput --batch-sizes "$B128" --variants baseline,bf16+channels-last,auto
    # max_minutes is training time (compilation included); the limit leaves room for the
    # validations and the final checkpoint; eval is the whole test set with the EMA weights
    step train-fmnist-${TRAIN_S}s $(( TRAIN_S + 60 )) $FF train configs/glow-fashion-mnist-fast.toml --run-dir "$run" \
      --device "$DEVICE" --no-progress --set train.max_minutes="$(python3 -c "print($TRAIN_S / 60)")" \
      "${MODEL[@]}" "${BATCH[@]}" "${EXTRA[@]}"
    step eval-fmnist-${TRAIN_S}s 60 $FF eval "$run" --split test --device "$DEVICE" --no-progress --batch-size 1000
    for f in eval-test.json report.md metrics.csv; do cp "$run/$f" "$RES/fmnist-${TRAIN_S}s-$f" 2>/dev/null; done
    ;;
  B)
    bench train-$B512-$B2048 150 train-throughput --batch-sizes "$B512,$B2048" --variants baseline,bf16+channels-last,auto
    bench sample 40 sample-throughput --batch-sizes "$B128,$B512" --variants baseline,bf16+channels-last
    step memory-vs-depth 40 python3 benchmarks/memory_vs_depth.py --device "$DEVICE" "${MEM[@]}"
    # last: compiling the whole flow pass may take long; its limit keeps the part under 10 minutes
    bench train-compile-flow-$B512 60 train-throughput --batch-sizes "$B512" \
      --variants bf16+channels-last,bf16+channels-last+compile-flow
    bench train-$GRAPHS-$B128 170 train-throughput --batch-sizes "$B128" \
      --variants bf16+channels-last,bf16+channels-last+$GRAPHS
    bench sample-$GRAPHS 90 sample-throughput --batch-sizes "$B128" --variants bf16+channels-last,bf16+channels-last+$GRAPHS
    ;;
  C)
    # the trainer's CUDA-graph path end to end (train.cuda_graphs: the whole pass compiled in
    # "reduce-overhead" mode), which the bench measured 4.9x normflows at batch 128 on an H200
    # where auto's compile-flow gave 1.1x; auto picks cuda-graphs once this run has worked
    run="$RUNS/glow-fmnist-cuda-graphs-${TRAIN_S}s"
    rm -rf "$run"
    GRAPH_SPEED=(--set train.speed=manual --set train.channels_last=true --set train.coupling_dtype=bfloat16
                 --set train.compile_flow=false --set "train.$([ "$GRAPHS" = cuda-graphs ] && echo cuda_graphs || echo compile_flow)=true")
    step train-fmnist-$GRAPHS-${TRAIN_S}s $(( TRAIN_S + 90 )) $FF train configs/glow-fashion-mnist-fast.toml --run-dir "$run" \
      --device "$DEVICE" --no-progress --set train.max_minutes="$(python3 -c "print($TRAIN_S / 60)")" \
      "${MODEL[@]}" "${BATCH[@]}" "${EXTRA[@]}" "${GRAPH_SPEED[@]}"
    step eval-fmnist-$GRAPHS-${TRAIN_S}s 60 $FF eval "$run" --split test --device "$DEVICE" --no-progress --batch-size 1000
    step sample-fmnist-$GRAPHS 60 $FF sample "$run" --device "$DEVICE" --no-progress --n 64 --temperature 0.7 --out "$RES/samples-$GRAPHS.png"
    for f in eval-test.json report.md metrics.csv; do cp "$run/$f" "$RES/fmnist-$GRAPHS-${TRAIN_S}s-$f" 2>/dev/null; done
    ;;
  *) echo "unknown part $PART; see the header of $0" >&2; exit 2 ;;
esac
save
echo "-------- summary ($OUT/summary-$PART.txt; everything in $OUT/gpu-quick-$PART.tgz)"
cat "$RES/summary.txt"
