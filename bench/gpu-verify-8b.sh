#!/bin/bash
# The GPU verify measurement of bench/NOTES.md ("verify on the GPU at 8B scale"), as run on the
# GPU machine. Before it, the pieces were sent in back-to-back runs into $W (the machine keeps
# /tmp only while warm): node.xz (this machine's node binary), app.tar.xz (dist/, bin/,
# package.json, the production node_modules with only the linux-x64 onnxruntime binaries,
# bench/synthetic-checkpoint.ts compiled to bjs/ and a gen.mjs that calls
# writeSyntheticCheckpoint(dir, {...LLAMA_8B_LIKE, layers}, 5e9)), and prov.part0..5 (the two
# libraries of the CUDA provider package `npm run setup:cuda` installs, tar | xz -1 | split).
# Then: convert, and verify --device cuda at 32 and 512 tokens, with cat > /dev/null of both
# checkpoints (cold, then page cache), peak host RSS (the CLI's own ru_maxrss) and GPU memory /
# utilisation sampled by nvidia-smi every 100 ms. Results go to $OUT.
# RSS (the CLI's own ru_maxrss) and GPU memory/utilisation sampled by nvidia-smi every 100 ms.
set -uo pipefail
W=/tmp/h18w
cp .dev/h18/r6/prov.part5 $W/
cd $W
ls -la $W
cat prov.part0 prov.part1 prov.part2 prov.part3 prov.part4 prov.part5 | sha256sum | cut -c1-16
xz -dc node.xz > node && chmod +x node
mkdir -p app && tar xJf app.tar.xz -C app
cat prov.part0 prov.part1 prov.part2 prov.part3 prov.part4 prov.part5 | xz -dc | tar x
cp prov/*.so app/node_modules/onnxruntime-node/bin/napi-v*/linux/x64/
rm -f prov.part* node.xz app.tar.xz
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/lib64
cd app
N=$W/node
$N --version; nproc; free -g | head -2; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
W8='process.on("exit",()=>process.stderr.write("MAXRSS_KB="+process.resourceUsage().maxRSS+"\n"));import {main} from "./dist/cli/index.js";process.exitCode=await main(process.argv);'
fp8q() { $N --input-type=module -e "$W8" fp8q "$@"; }
t() { local s=$(date +%s.%N); "$@"; local rc=$?; echo "TIME $(awk "BEGIN{print $(date +%s.%N)-$s}") rc=$rc: $*" >&2; return $rc; }
t $N gen.mjs /tmp/src 32
t fp8q convert /tmp/src -o /tmp/fp8 --json > $OUT/convert.json 2> $OUT/convert.err; tail -2 $OUT/convert.err
du -sb /tmp/src /tmp/fp8
for T in 32 512; do
  sync; echo 3 > /proc/sys/vm/drop_caches
  t sh -c 'cat /tmp/src/* /tmp/fp8/* > /dev/null'
  t sh -c 'cat /tmp/src/* /tmp/fp8/* > /dev/null'
  nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader,nounits -lms 100 > $OUT/smi-$T.txt &
  S=$!
  t fp8q verify /tmp/src /tmp/fp8 --tokens $T --device cuda --json > $OUT/verify-$T.json 2> $OUT/verify-$T.err
  kill $S
  tail -3 $OUT/verify-$T.err
  sort -t, -n -k1 $OUT/smi-$T.txt | tail -1 | sed "s/^/peak MiB,util: /"
  awk -F, '{u+=$2; n++} END {print "mean GPU util %", u/n, "samples", n}' $OUT/smi-$T.txt
done
