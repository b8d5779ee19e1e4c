#!/bin/sh
# Builds the world's shipped models from the two finished training runs, in order; each step is resumable or
# cheap to redo, so after a stop run it again. Run from the project folder:
#
#   GAN=.tmp/world/gan/checkpoint/NNNNNN.pt tools/world_build.sh
#
# QUICK=1 rehearses every step at a tiny scale into WORLD (default .tmp/world-quick), to check the pipeline
# on unfinished checkpoints; without it everything goes to models/world/ at the issue's scale.
#
#   1. generator.pt  train export of the GAN's g_ema + latent_avg, float16
#   2. clip.pt       shipped (models/world/clip.md); with CLIP_RUN=DIR, train export of that run instead
#   3. fs3.npy       global precompute, K = 100 images per channel
#   4. mappers/*.pt  mapper train for the four shipped prompts (and six more for the benchmark), train export, float16
#   5. figures       the Fréchet distance (shipped generator and the 27-kimg one), the semantic benchmark and the
#                    inversion PSNR of 20 held-out faces
set -eu
: "${GAN:?set GAN to the world GAN checkpoint to ship}"
cli() { node --import tsx src/cli/main.ts "$@"; }
if [ "${QUICK:-}" = 1 ]; then
  WORLD=${WORLD:-.tmp/world-quick}
  K=2 STATS=2000 MAPPER_STEPS=20 MAPPER_TRAIN=64 FID_COUNT=64 SEM_SEEDS=2 SEM_EXTRA="--opt-steps 5" INV="--count 2 --steps 20"
else
  WORLD=${WORLD:-models/world}
  # Mappers: Ranger keeps them near zero for ~700 steps, then the CLIP loss falls until ~2,000 (measured on
  # "purple hair": 0.96 → 0.84 by step 1,950, flat after); 2,500 steps are ~4 min on one core.
  K=100 STATS=100000 MAPPER_STEPS=${MAPPER_STEPS:-2500} MAPPER_TRAIN=5000 FID_COUNT=2000 SEM_SEEDS=50 SEM_EXTRA="" INV=""
fi
# The world CLIP's temperature is exp(3.41) = 30.3 where OpenAI's is 100, so StyleCLIP's CLIP loss
# 1 − logits/100 pulls 0.303× as hard against the same λ_L2 (0.8); λ_CLIP 3.3 restores the paper's balance.
# At λ 1 a "purple hair" mapper did not leave zero in 600 steps (CLIP loss 0.96 throughout).
MAPPER_CLIP_LAMBDA=${MAPPER_CLIP_LAMBDA:-3.3}
WORK=.tmp/world-build
mkdir -p "$WORLD/mappers" "$WORK"
export STYLECLIP_WORLD="$WORLD"

echo "== 1. generator"
cli train export "$GAN" --out "$WORLD/generator.pt" --half

echo "== 2. CLIP (shipped since 2026-11-30: models/world/clip.pt; CLIP_RUN=DIR exports another run's)"
if [ -n "${CLIP_RUN:-}" ]; then
  CLIP_SRC="$CLIP_RUN/clip.pt"
  [ -f "$CLIP_SRC" ] || CLIP_SRC=$(ls "$CLIP_RUN"/checkpoints/clip_*.pt | tail -1)
  cli train export "$CLIP_SRC" --out "$WORLD/clip.pt" --half
elif [ ! -f "$WORLD/clip.pt" ]; then
  cp models/world/clip.pt "$WORLD/"
fi
[ -f "$WORLD/classifier.safetensors" ] || cp models/world/classifier.safetensors "$WORLD/"

# fs3 and the mappers need only the generator and CLIP: fs3 runs beside the mappers, one core each.
echo "== 3. fs3 (K = $K), in the background: $WORK/fs3.log"
FS3_PID=
if [ ! -f "$WORLD/fs3.npy" ]; then
  STYLECLIP_THREADS=1 cli global precompute --images "$K" --stats-samples "$STATS" --out "$WORLD/fs3.npy" \
    > "$WORK/fs3.log" 2>&1 &
  FS3_PID=$!
fi

echo "== 4. mappers"
# Levels per prompt, as StyleCLIP turns mappers off per edit, and to keep models/world/ under 40 MB (a level is
# four 512² layers, 2.1 MB in float16). At 64² the W+ rows are coarse 0-3 (4², 8²: shape), medium 4-7 (16²,
# 32²: features) and fine 8-9 (64²: colour). Four are shipped; the semantic benchmark needs one per prompt,
# so the other six are trained into $WORK/bench-mappers and seen through a benchmark world folder.
BENCH_WORLD=$WORK/bench-world
mkdir -p "$WORK/bench-mappers" "$BENCH_WORLD/mappers"
mapper() { # destination folder, name (the file's slug), training prompt, level flags
  dest=$1 slug=$(echo "$2" | tr ' ' '_') prompt=$3
  shift 3
  [ -f "$dest/$slug.pt" ] && return 0
  run="$WORK/mapper-$slug"
  last=$(ls "$run"/checkpoints/iteration_*.pt 2>/dev/null | sort -V | tail -1 || true)
  STYLECLIP_THREADS=1 cli mapper train --prompt "$prompt" --steps "$MAPPER_STEPS" --train-size "$MAPPER_TRAIN" \
    --clip-lambda "$MAPPER_CLIP_LAMBDA" --out "$run" ${last:+--resume "$last"} "$@"
  cli train export "$run/checkpoints/best_mapper.pt" --out "$dest/$slug.pt" --half
}
mapper "$WORLD/mappers" "purple hair" "a face with purple hair" --no-coarse
mapper "$WORLD/mappers" "smiling" "a face with a smile" --no-coarse --no-fine
mapper "$WORLD/mappers" "mohawk hairstyle" "a face with a mohawk" --no-fine
mapper "$WORLD/mappers" "glasses" "a face with glasses" --no-coarse --no-fine
B=$WORK/bench-mappers
mapper "$B" "grey hair" "a face with grey hair" --no-coarse
mapper "$B" "blue hair" "a face with blue hair" --no-coarse
mapper "$B" "blonde hair" "a face with blonde hair" --no-coarse
mapper "$B" "bob cut" "a face with a bob cut" --no-fine
mapper "$B" "surprised" "a face with a surprised look" --no-coarse --no-fine
mapper "$B" "afro" "a face with an afro" --no-fine
if [ -n "$FS3_PID" ]; then
  echo "== 3. waiting for fs3"
  wait "$FS3_PID" || { tail -5 "$WORK/fs3.log"; exit 1; }
fi
for f in "$WORLD"/*.* ; do ln -sf "$(realpath "$f")" "$BENCH_WORLD/"; done
for f in "$WORLD"/mappers/*.pt "$B"/*.pt; do ln -sf "$(realpath "$f")" "$BENCH_WORLD/mappers/"; done

echo "== 5. figures (about 25 min)"
cli world fid --count "$FID_COUNT" --json > "$WORK/fid.json" || echo "fid: failed (see above)"
cli world fid --count "$FID_COUNT" --generator models/world/train/generator-27kimg.pt --json > "$WORK/fid-27kimg.json" ||
  echo "fid (27 kimg): failed (see above)"
# shellcheck disable=SC2086
STYLECLIP_WORLD=$BENCH_WORLD node --import tsx bench/main.ts semantic --seeds "$SEM_SEEDS" $SEM_EXTRA \
  --pictures "$WORK/semantic-pictures" > "$WORK/semantic.jsonl" || echo "semantic: failed"
# inversion of 20 held-out faces, 300 steps: pixel loss alone, and with the world CLIP's term
# shellcheck disable=SC2086
node --import tsx bench/main.ts invert world --generator "$WORLD/generator.pt" --clip-lambda 0 $INV > "$WORK/invert.jsonl" ||
  echo "invert: failed"
# shellcheck disable=SC2086
node --import tsx bench/main.ts invert world --generator "$WORLD/generator.pt" --clip "$WORLD/clip.pt" $INV \
  > "$WORK/invert-clip.jsonl" || echo "invert (CLIP): failed"
du -sh --exclude=train "$WORLD"; ls -la "$WORLD" "$WORLD"/mappers
