#!/bin/bash
# The GPU verify measurement of bench/NOTES.md ("verify: memory and GPU time, third look"), as run
# on the GPU machine: the pieces bench/gpu-bundle.sh makes (part.0, part.1, part.2, ~25 MB each)
# were copied into /tmp/fp8q-gpu ($W) by two back-to-back runs (the machine keeps /tmp only while warm), and this
# script came with the third. It generates a Llama-3-8B-shaped BF16 checkpoint (32 layers),
# converts it (and times convert without --json with both builds against cp -r + sync), and verifies it with --device cuda at 32 and 512 tokens with two builds in rotation
# (dist-main, dist), then once more under --cpu-prof: wall and report seconds, `cat` of both
# checkpoints cold and from the page cache, peak host RSS (the CLI's own ru_maxrss), peak GPU
# memory and mean utilisation (nvidia-smi every 100 ms), and a profile summary. Results go to $OUT.
# Usage on the GPU machine: [MODEL=deepseek [DS_LAYERS=6] [DS_EXPERTS=16]] [CONVERT_AB=0] [REUSE=1] [BUILDS="dist-main dist ..."] [TOKENS="32 512"]
#   bench/gpu-verify-8b.sh <dir holding part.2>   (bench/NOTES.md also ran DS_LAYERS=2 DS_EXPERTS=64: denser routing)
set -uo pipefail
W=/tmp/fp8q-gpu
OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT"
P=$(cd "$1" && pwd)
# REUSE=1: a later call while the machine is still warm, on the app unpacked by the first one.
if [ "${REUSE:-0}" != 1 ] || [ ! -x $W/node ]; then
  cp "$P/part.2" $W/
  cd $W
  cat part.0 part.1 part.2 | sha256sum | cut -c1-16
  mkdir -p b && cat part.0 part.1 part.2 | tar x -C b && rm -f part.* && cd b && sha256sum -c SUMS || exit 1
  xz -dc node.xz > $W/node && chmod +x $W/node
  mkdir -p $W/app && tar xJf nm.tar.xz -C $W/app && tar xJf dists.tar.xz -C $W/app && tar xJf prov.tar.xz -C $W/app
  cd $W && rm -rf b
  cp app/libonnxruntime_providers_*.so app/node_modules/onnxruntime-node/bin/napi-v*/linux/x64/
fi
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/lib64
cd $W/app
N=$W/node
$N --version; nproc; free -g | head -2; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
# dist runs as a user runs it, through bin/fp8q.js (which relaunches the runtime commands with
# malloc tunables: every node process of the run prints its peak RSS); dist-main through its main().
# Also each process's main thread: when it started and when it reached its exit handler (epoch ms),
# so the wall's excess over the report's seconds can be told apart (node's start, the relaunch, exit).
printf '%s\n' "import {isMainThread} from 'node:worker_threads';" \
  "process.on('exit',()=>process.stderr.write('MAXRSS_KB='+process.resourceUsage().maxRSS+(isMainThread?' PID='+process.pid+' PSTART='+Math.round(performance.timeOrigin)+' PEXIT='+Date.now():'')+'\\n'));" > $W/maxrss.mjs
run() {
  local d=$1; shift
  if [ $d = dist ]; then NODE_OPTIONS="--import $W/maxrss.mjs" $N "${PROF[@]}" bin/fp8q.js "$@"
  else $N "${PROF[@]}" --import $W/maxrss.mjs --input-type=module -e "import {main} from './$d/cli/index.js';process.exitCode=await main(process.argv);" fp8q "$@"; fi
}
t() { local s=$(date +%s.%N); "$@"; local rc=$?; echo "TIME $(awk "BEGIN{print $(date +%s.%N)-$s}") rc=$rc: $*" >&2; return $rc; }
PROF=()
# Fixed costs outside a verify's own time: node and the CLI, then the CUDA probe (onnxruntime,
# the provider's libraries, the CUDA context, one tiny session).
t run dist --version > /dev/null
t run dist setup-cuda --check 2>&1 | tail -3
# MODEL=deepseek: the DeepSeek-V3-shaped checkpoint instead (real dimensions and vocabulary,
# DS_LAYERS MoE layers of DS_EXPERTS routed experts, 8 per token); gen-ds.mjs from the bundle or $1.
# A checkpoint of another run (REUSE=1 after another MODEL) is not converted over: convert refuses.
rm -rf /tmp/src /tmp/fp8
if [ "${MODEL:-llama}" = deepseek ]; then
  [ -f gen-ds.mjs ] || cp "$P/gen-ds.mjs" .
  t $N gen-ds.mjs /tmp/src ${DS_LAYERS:-6} ${DS_EXPERTS:-16}
else t $N gen.mjs /tmp/src 32; fi
t run dist convert /tmp/src -o /tmp/fp8 --json > $OUT/convert.json 2> $OUT/convert.err; tail -2 $OUT/convert.err
du -sb /tmp/src /tmp/fp8
# Convert without --json (no shard hashes: copies and quantized tensors in lanes) with both builds
# in rotation, each from a cold cache and synced, against cp -r + sync of the source.
# CONVERT_AB=0 skips this part (a verify-only round).
[ "${CONVERT_AB:-1}" = 0 ] || for B in dist-main dist dist-main dist cp; do
  sync; echo 3 > /proc/sys/vm/drop_caches; rm -rf /tmp/ab
  s=$(date +%s.%N)
  if [ $B = cp ]; then cp -r /tmp/src /tmp/ab; else run $B convert /tmp/src -o /tmp/ab > /dev/null 2> $W/ab.err; fi
  rc=$?; sync
  echo "TIME $(awk "BEGIN{print $(date +%s.%N)-$s}") rc=$rc: $B (convert or cp -r) + sync $(grep -o 'MAXRSS_KB=[0-9]*' $W/ab.err 2>/dev/null)" >&2; rm -f $W/ab.err
done
rm -rf /tmp/ab
for T in ${TOKENS:-32 512}; do
  sync; echo 3 > /proc/sys/vm/drop_caches
  t sh -c 'cat /tmp/src/* /tmp/fp8/* > /dev/null'
  t sh -c 'cat /tmp/src/* /tmp/fp8/* > /dev/null'
  # BUILDS: the runs of each token count, in order (prof: dist under --cpu-prof).
  for B in ${BUILDS:-dist-main dist dist-main dist prof}; do
    D=$B; PROF=(); [ $B = prof ] && { D=dist; PROF=(--cpu-prof --cpu-prof-dir=$W/prof-$T); }
    nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader,nounits -lms 100 > $W/smi.txt &
    S=$!
    S0=$(date +%s%3N)
    t run $D verify /tmp/src /tmp/fp8 --tokens $T --device cuda --json > $W/v.json 2> $W/v.err
    S1=$(date +%s%3N)
    kill $S; wait $S 2>/dev/null
    # Every thread prints the process's peak so far at its exit (a worker thread's comes first), and
    # bin/fp8q.js's parent prints its own: the run's peak host RSS is the largest.
    echo "== $B T=$T peak_rss_GB=$(grep -o 'MAXRSS_KB=[0-9]*' $W/v.err | cut -d= -f2 | sort -n | tail -1 | awk '{printf "%.2f", $1*1024/1e9}') report_s=$($N -e "const r=JSON.parse(require('fs').readFileSync('$W/v.json'));const {seconds,peakWeightBytes,...rest}=r;console.log(seconds.toFixed(2),'peakW_MiB',(peakWeightBytes/2**20).toFixed(0),'passed',r.passed,'kl',r.model.meanKl,'linears',r.linears.length,'report_sha',require('crypto').createHash('sha256').update(JSON.stringify(rest)).digest('hex').slice(0,12))") smi_peak_MiB,util=$(sort -t, -n -k1 $W/smi.txt | tail -1) mean_util=$(awk -F, '{u+=$2; n++} END {print u/n}' $W/smi.txt)"
    grep -v MAXRSS $W/v.err | tail -2
    echo "   timeline ms from the shell's start: $(grep -o 'PID=[0-9]* PSTART=[0-9]* PEXIT=[0-9]*' $W/v.err | awk -v s=$S0 '{split($2,a,"=");split($3,b,"=");printf "%s start +%d exit-handler +%d; ",$1,a[2]-s,b[2]-s}')shell end +$((S1-S0))"
    [ $B = prof ] || cp $W/v.json $OUT/verify-$B-$T.json
  done
  # Paired layers (verify/paired-layers.ts) sum each comparison in another order: the figures of
  # the two builds agree to the last digits, not bit for bit. Everything else must be identical.
  $N -e "const fs=require('fs');const r=(f)=>{const x=JSON.parse(fs.readFileSync(f));delete x.seconds;delete x.peakWeightBytes;return x;};let worst=0,diff=[];const cmp=(a,b,p)=>{if(typeof a==='number'&&typeof b==='number'){if(a===b)return;const d=Math.abs(a-b)/Math.max(Math.abs(b),1e-3);worst=Math.max(worst,d);if(!(d<=1e-5))diff.push(p+': '+a+' vs '+b);return;}if(a&&b&&typeof a==='object'&&typeof b==='object'){const k=new Set([...Object.keys(a),...Object.keys(b)]);for(const x of k)cmp(a[x],b[x],p+'.'+x);return;}if(a!==b)diff.push(p+': '+JSON.stringify(a)+' vs '+JSON.stringify(b));};cmp(r('$OUT/verify-dist-$T.json'),r('$OUT/verify-dist-main-$T.json'),'report');console.log('reports (dist, dist-main; T=$T) equal but seconds and peakWeightBytes, numbers within 1e-5 relative:',diff.length===0,'largest relative difference',worst.toExponential(2),diff.slice(0,5).join('; '))"
  $N prof.mjs $W/prof-$T > $OUT/prof-$T.txt 2>&1; head -45 $OUT/prof-$T.txt
done
