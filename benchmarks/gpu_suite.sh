#!/usr/bin/env bash
# The issue-3 measurements on the GPU machine, in stages that each fit a 10-minute job.
#
#   benchmarks/gpu_suite.sh STAGE [OUT_DIR]        (OUT_DIR default: benchmarks/results/gpu)
#
# Stages (run each as its own job; the training stages resume where the last job stopped,
# so call them again until they print "done"; the summed wall-clock is in RUN/report.md):
#   bench-train-128 bench-train-512 bench-train-2048   training throughput vs normflows + speed variants
#   bench-sample bench-memory bench-flops              sampling, peak memory, achieved TFLOP/s
#   memory-depth                                       peak training memory for K = 8, 16, 32, 64 (+ reversible, checkpointed)
#   fmnist-420s                                        Fashion-MNIST, 420 s of training, then test bpd
#   fmnist-25min mnist-25min                           25 minutes of training each (3+ jobs), then test bpd
#   cpu-train                                          the CPU training-step comparison (2 threads)
#   smoke                                              tiny-mnist through the resumable-job machinery
# Needs: pip install -e '.[bench]' (normflows 1.7.3) and the data sets (flowforge data mnist fashion-mnist).
set -euo pipefail
STAGE=${1:?stage name, see the header of $0}
OUT=${2:-benchmarks/results/gpu}
mkdir -p "$OUT"
FF="python -m flowforge.cli"
VARIANTS=baseline,channels-last,bf16,compile,sync-free,bf16+channels-last,all,all+sync-free
RUNS=${RUNS:-runs/gpu}   # training run directories (checkpoints: git-ignored)
CHUNK_S=${CHUNK_S:-540}   # one job's share of training, below the 10-minute job limit

bench() {  # bench NAME OUTFILE ARGS...
  local name=$1 out=$2; shift 2
  $FF bench "$name" --device cuda --no-progress --steps-per-round "${STEPS:-10}" --out "$OUT/$out" "$@"
}

train_chunk() {  # train_chunk RUN_DIR CONFIG [--set ...]: one resumable job, then eval when finished
  local run=$1 config=$2; shift 2
  local start=$(date +%s) rc=0
  if [ -e "$run/checkpoints/last" ]; then
    timeout -s INT "$CHUNK_S" $FF train --resume --run-dir "$run" --no-progress "$@" || rc=$?
  else
    timeout -s INT "$CHUNK_S" $FF train "$config" --run-dir "$run" --no-progress "$@" || rc=$?
  fi
  echo "job wall-clock: $(( $(date +%s) - start )) s (exit $rc)" | tee -a "$run/jobs.log"
  if [ "$rc" -eq 0 ]; then
    $FF eval "$run" --split test --no-progress | tee "$run/test-bpd.txt"
    local name=$(basename "$run")
    for f in test-bpd.txt jobs.log report.md metrics.csv; do cp "$run/$f" "$OUT/$name-$f"; done
    echo "done: $run (summed wall-clock of the jobs: $OUT/$name-jobs.log; training time: $OUT/$name-report.md)"
  elif [ "$rc" -eq 130 ] || [ "$rc" -eq 124 ]; then
    echo "checkpointed; run this stage again to continue"
  else
    exit "$rc"
  fi
}

case "$STAGE" in
  bench-train-128)  bench train-throughput train-128 --batch-sizes 128 --variants "$VARIANTS,bf16+channels-last+cuda-graphs" ;;
  bench-train-512)  bench train-throughput train-512 --batch-sizes 512 --variants "$VARIANTS" ;;
  bench-train-2048) bench train-throughput train-2048 --batch-sizes 2048 --variants baseline,bf16+channels-last,all,all+sync-free ;;
  bench-sample)     bench sample-throughput sample --batch-sizes 128,1024 \
                      --variants baseline,bf16+channels-last,bf16+channels-last+compile-flow,bf16+channels-last+cuda-graphs ;;
  bench-memory)     bench memory memory --batch-sizes 128,512 --variants "$VARIANTS" ;;
  bench-flops)      bench flops flops --batch-sizes 512,2048 --variants baseline,all+sync-free ;;
  memory-depth)
    for k in 8 16 32 64; do STEPS=1 bench memory "memory-K$k" --depth "$k" --batch-sizes 128 --variants baseline --rounds 1; done
    # ordinary vs reversible (memory-saving) vs checkpointed backprop, peak CUDA memory per K
    PYTHONPATH=src python benchmarks/memory_vs_depth.py --device cuda --depths 8 16 32 64 | tee "$OUT/memory-vs-depth.md" ;;
  fmnist-420s)  train_chunk "$RUNS/glow-fmnist-420s" configs/glow-fashion-mnist-fast.toml --set train.max_minutes=7 ;;
  fmnist-25min) train_chunk "$RUNS/glow-fmnist-25min" configs/glow-fashion-mnist-fast.toml ;;
  mnist-25min)  train_chunk "$RUNS/glow-mnist-25min" configs/glow-mnist-fast.toml ;;
  smoke) train_chunk "$RUNS/smoke" configs/tiny-mnist.toml --set train.max_steps=300 --set train.checkpoint_every=20 ;;
  cpu-train)
    OMP_NUM_THREADS=2 $FF bench train-throughput --device cpu --no-progress --batch-sizes 64 \
      --variants baseline,bf16,channels-last --out "$OUT/cpu-train" ;;
  *) echo "unknown stage $STAGE; see the header of $0" >&2; exit 2 ;;
esac
