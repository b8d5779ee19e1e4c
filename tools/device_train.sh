#!/bin/bash
# Training throughput on a lent GPU machine (set up as tools/device_check.sh does): the world GAN (64²,
# batch 16) and the world CLIP (batch 64) for a fixed number of iterations on WebGPU and on the CPU.
set -u
OUT=${OUT:-.tmp/device}
mkdir -p "$OUT" /tmp/bin
[ -x /tmp/bin/node ] || { xz -dc .dev/node.xz > /tmp/bin/node && chmod +x /tmp/bin/node; }
export PATH=/tmp/bin:$PATH
[ -d node_modules/tsx ] || tar -xJf .dev/nm.tar.xz
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
GAN="--size 64 --channels 4:128,8:128,16:128,32:64,64:32 --n-mlp 8 --batch 16 --seed 0 --sample-every 1000"
for dev in webgpu cpu; do
  echo "== gan $dev ($(date +%T))"
  timeout 100 node --import tsx src/cli/main.ts train gan world:4000 --out /tmp/gan-$dev $GAN --iter 120 --device $dev 2>&1 | tail -3
  cp /tmp/gan-$dev/logs/metrics.jsonl "$OUT/gan-$dev.jsonl" 2>/dev/null
  echo "== clip $dev ($(date +%T))"
  timeout 80 node --import tsx src/cli/main.ts train clip --world 4000 --val-count 64 --steps 60 --log-every 10 --eval-every 0 --out /tmp/clip-$dev --device $dev 2>&1 | tail -3
  cp /tmp/clip-$dev/logs/metrics.jsonl "$OUT/clip-$dev.jsonl" 2>/dev/null
done
echo "== done ($(date +%T))"
