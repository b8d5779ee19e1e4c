#!/bin/sh
# The README's pictures of the world, from the shipped models in models/world (run after tools/world_build.sh):
#
#   tools/world_gallery.sh
#
#   docs/world-generated.png    64 generated faces, seeds 0-63, ψ 1 (the images the FID is measured on)
#   docs/world-edit.png         the README's main command: before and after "a face with purple hair", seed 36
#   docs/world-global-strip.png global directions, α = -4 … 8, three prompts (rows) on seed 3
#   docs/world-mapper-*.png     each shipped mapper on seeds 1-4: before, then strengths 1 and 2
#   docs/world-optimize.png     latent optimization "a face with glasses", seed 0: every 20th step of 100
set -eu
cli() { node --import tsx src/cli/main.ts "$@"; }
T=.tmp/world-gallery
mkdir -p "$T" docs

cli generate --seed 0 --count 64 --grid --noise random --out docs/world-generated.png

cli global edit --target "a face with purple hair" --seed 36 --alphas 0,4.1 --strip --out "$T/edit.png"
node --import tsx tools/stack_images.ts --scale 3 docs/world-edit.png "$T/edit.png"

rows=""
for t in "a face with purple hair" "a face with a smile" "a face with glasses"; do
  f="$T/strip-$(echo "$t" | tr ' ' '_').png"
  cli global edit --target "$t" --seed 3 --alphas -4,0,4,8 --strip --out "$f"
  rows="$rows $f"
done
# shellcheck disable=SC2086
node --import tsx tools/stack_images.ts --scale 2 docs/world-global-strip.png $rows

for m in models/world/mappers/*.pt; do
  name=$(basename "$m" .pt)
  cli mapper apply --mapper "$m" --seed 1,2,3,4 --strength 1,2 --out "$T/mapper-$name.png"
  node --import tsx tools/stack_images.ts --scale 2 "docs/world-mapper-$name.png" "$T/mapper-$name.png"
done

rm -rf "$T/opt"
cli optimize --prompt "a face with glasses" --seed 0 --steps 100 --save-every 20 --out "$T/opt"
# shellcheck disable=SC2046
node --import tsx tools/stack_images.ts --row --scale 2 docs/world-optimize.png $(ls "$T"/opt/0*.jpg | sort) "$T/opt/final.png"
ls -la docs/world-*.png
