#!/bin/bash
# The GPU checks, run on a lent GPU machine that has no Node.js and no network (see the README's Execution
# providers): unpacks a stripped Node binary and node_modules carried in .dev/, the Vulkan loader from .gl/,
# then runs the engine's op tests and the generator's fixture parity on WebGPU, and `bench devices`
# (WebGPU against the CPU, same weights). Logs go to $OUT (or .tmp/device).
#
# Made here (in the project folder) before the call:
#   strip a copy of node; xz it to .dev/node.xz; tar+xz node_modules (less dev tools and other platforms)
#   to .dev/nm.tar.xz; apt-get download libvulkan1 into .gl/
set -u
OUT=${OUT:-.tmp/device}
mkdir -p "$OUT" /tmp/bin
log() { echo "== $* ($(date +%T))"; }
log setup
xz -dc .dev/node.xz > /tmp/bin/node && chmod +x /tmp/bin/node
export PATH=/tmp/bin:$PATH
tar -xJf .dev/nm.tar.xz
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
nvidia-smi -L; nproc; node --version
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES=$icd
ls /usr/local/nvidia/share/vulkan/icd.d/ /usr/share/vulkan/icd.d/ /etc/vulkan/icd.d/ 2>&1 | head
log probe
STYLECLIP_DEVICE=webgpu timeout 60 node --import tsx -e "
const s = await import('./src/runtime/session.ts');
console.log('active provider:', await s.activeProvider());
" 2>&1 | tail -5
log parity on webgpu
STYLECLIP_DEVICE=webgpu timeout 150 node --import tsx --test --test-reporter=spec \
  test/models/stylegan2/rosinality.test.ts test/engine/*.test.ts 2>&1 | tee "$OUT/parity.log" | grep -E "^# |not ok|✖" | head -40
log bench devices
timeout 260 node --import tsx bench/main.ts devices --devices webgpu,cpu 2>&1 | tee "$OUT/devices.jsonl"
log done
