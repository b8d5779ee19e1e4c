#!/bin/sh
# Packs what tools/device_check.sh and tools/device_train.sh need on a GPU machine that has no Node.js and
# no network: a stripped Node binary (.dev/node.xz, 22 MB), node_modules without the dev tools and other
# platforms' binaries (.dev/nm.tar.xz, 25 MB) and the Vulkan and GL dispatch libraries that WebGPU (Dawn)
# loads beside the NVIDIA driver (.gl/*.deb, from Debian). Both folders are ignored (.git/info/exclude).
set -eu
mkdir -p .dev .gl /tmp/amd64/partial
cp "$(command -v node)" /tmp/node-stripped && strip /tmp/node-stripped
xz -T2 -6 -c /tmp/node-stripped > .dev/node.xz
tar -cf - --exclude='node_modules/@biomejs' --exclude='node_modules/typescript' \
  --exclude='node_modules/@typescript' --exclude='node_modules/playwright-core' --exclude='node_modules/@types' \
  --exclude='node_modules/@vladmandic' --exclude='node_modules/onnxruntime-node/bin/napi-v6/darwin' \
  --exclude='node_modules/onnxruntime-node/bin/napi-v6/win32' \
  --exclude='node_modules/onnxruntime-node/bin/napi-v6/linux/arm64' node_modules | xz -T2 -6 > .dev/nm.tar.xz
o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
# shellcheck disable=SC2086
apt-get $o update > /dev/null
# Without libglvnd0 and the GLX/EGL stubs the driver's Vulkan ICD (libGLX_nvidia.so.0) does not load.
(cd .gl && apt-get $o download libvulkan1 libglvnd0 libegl1 libgl1 libglx0 libopengl0 libgles2)
ls -la .dev .gl
