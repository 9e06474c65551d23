#!/bin/bash
# Builds what bench/gpu-verify-8b.sh needs on the GPU machine into three pieces of ~25 MB, one per
# back-to-back run (a run carries at most 64 MiB with the checkout, ~30 MB of which is tracked):
#   node.xz        this machine's node binary
#   nm.tar.xz      production node_modules (linux-x64 onnxruntime only), package.json, bin/, data/,
#                  gen.mjs / gen-ds.mjs (bench/synthetic-checkpoint.ts, synthetic-deepseek.ts bundled)
#                  and prof.mjs (profile summary)
#   dists.tar.xz   dist/ (this tree) and dist-main/ (a build to compare with, from $MAIN_TREE)
#   prov.tar.xz    the CUDA 13 provider of `fp8q setup-cuda`, its non-sm_90 cubins zeroed
# The provider library is 230 MB, 166 MB of it CUDA fatbins for sm_75/80/86/89/90/120. An H200
# (sm_90) loads only sm_90 images, so the other entries' payloads are zeroed (headers kept): it
# then packs to 38 MB instead of 179 MB, and loads and runs as before.
# Usage: MAIN_TREE=<built checkout> bench/gpu-bundle.sh <out-dir>   (needs npm, xz, python3, esbuild)
set -euo pipefail
OUT=$(realpath "$1"); REPO=$(cd "$(dirname "$0")/.." && pwd); MAIN_TREE=${MAIN_TREE:-$REPO}
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
mkdir -p "$OUT" "$W/app"
xz -T2 -9e -c "$(command -v node)" > "$W/node.xz"
cd "$REPO" && npm run -s build
cp -r dist bin data package.json "$W/app/" && cp -r "$MAIN_TREE/dist" "$W/app/dist-main"
npm ls --omit=dev --parseable --all 2>/dev/null | sed "s|$REPO/||" | grep node_modules | sort -u > "$W/prod.txt"
tar cf - -T "$W/prod.txt" | tar xf - -C "$W/app"
rm -rf "$W"/app/node_modules/onnxruntime-node/bin/napi-v*/{darwin,win32,linux/arm64}
find "$W/app" \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' \) -delete
printf '%s\n' "import { LLAMA_8B_LIKE, writeSyntheticCheckpoint } from '$REPO/bench/synthetic-checkpoint.ts';" \
  'const [dir, layers] = process.argv.slice(2);' \
  'console.log(JSON.stringify(await writeSyntheticCheckpoint(dir, { ...LLAMA_8B_LIKE, layers: Number(layers) }, 5e9)));' > "$W/gen-entry.ts"
npx esbuild "$W/gen-entry.ts" --bundle --platform=node --format=esm --outfile="$W/app/gen.mjs" --log-level=warning
printf '%s\n' "import { DEEPSEEK_V3, writeSyntheticDeepseek } from '$REPO/bench/synthetic-deepseek.ts';" \
  'const [dir, layers, experts] = process.argv.slice(2);' \
  'console.log(JSON.stringify(await writeSyntheticDeepseek(dir, { layers: Number(layers), routedExperts: Number(experts), vocab: 129280, fusedExperts: false }, 5e9)));' \
  'void DEEPSEEK_V3;' > "$W/gen-ds-entry.ts"
npx esbuild "$W/gen-ds-entry.ts" --bundle --platform=node --format=esm --outfile="$W/app/gen-ds.mjs" --log-level=warning
cp "$REPO/bench/profile-summary.mjs" "$W/app/prof.mjs"
(cd "$W/app" && tar cf - node_modules gen.mjs gen-ds.mjs prof.mjs package.json bin data | xz -T2 -9 > "$W/nm.tar.xz" && tar cf - dist dist-main | xz -9 > "$W/dists.tar.xz")
(cd "$W" && npm pack -s com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9 > /dev/null && tar xzf com.github.asus4.onnxruntime.linux-x64-gpu-*.tgz)
python3 - "$W/package/Plugins/Linux/x64/libonnxruntime_providers_cuda.so" "$W/libonnxruntime_providers_cuda.so" <<'PY'
import struct, subprocess, sys
src, dst = sys.argv[1], sys.argv[2]
data = bytearray(open(src, 'rb').read())
for line in subprocess.check_output(['readelf', '-S', '-W', src]).decode().splitlines():
    if '.nv_fatbin' in line:
        f = line.split(']')[1].split(); off, size = int(f[3], 16), int(f[4], 16)
pos, end = off, off + size
while pos < end:
    magic, _, hsize, fsize = struct.unpack_from('<IHHQ', data, pos)
    if magic != 0xBA55ED50: pos += 8; continue
    p, e = pos + hsize, pos + hsize + fsize
    while p < e:
        _, _, ehs, psize = struct.unpack_from('<HHIQ', data, p)
        if struct.unpack_from('<I', data, p + 28)[0] != 90: data[p + ehs:p + ehs + psize] = bytes(psize)
        p += ehs + psize
    pos = e
open(dst, 'wb').write(data)
PY
cp "$W/package/Plugins/Linux/x64/libonnxruntime_providers_shared.so" "$W/"
(cd "$W" && tar cf - libonnxruntime_providers_cuda.so libonnxruntime_providers_shared.so | xz -T2 -9 > prov.tar.xz)
(cd "$W" && mkdir b && mv node.xz nm.tar.xz dists.tar.xz prov.tar.xz b/ && cd b && sha256sum * > SUMS && tar cf "$W/all.tar" .)
split -b 25200000 -d -a 1 "$W/all.tar" "$OUT/part."
ls -la "$OUT"
