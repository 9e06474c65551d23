# Sourced by scripts/gpu-check.sh (uses its step/note/skipped, $out, $summary): `fp8q verify` on
# CPU and on CUDA, timed, and how far the two runs are apart.
#   - the three fixtures (llama, mixtral, deepseek_v3), converted here, verified against their
#     committed input ids; `fp8q logits` of the original and FP8 checkpoints on both devices;
#   - a synthetic Llama of 1.1 B parameters (scripts/make-synthetic-llama.ts), converted, then
#     verified on CUDA and on CPU for each token count in $SYNTHETIC_TOKENS (default "32 512").
# Large files go to $GPU_CHECK_WORK (default /tmp/fp8q-gpu-check), not to $out. Skippable parts
# (gpu-check.sh --skip): fixtures, synthetic, synthetic-make, synthetic-verify (the last reuses
# the checkpoints an earlier synthetic-make left in $GPU_CHECK_WORK).

work="${GPU_CHECK_WORK:-/tmp/fp8q-gpu-check}"
mkdir -p "$work"
fp8q=(node bin/fp8q.js)
compare=(node --import tsx scripts/compare-runs.ts)

for m in $(skipped fixtures || echo llama mixtral deepseek_v3); do
  rm -rf "$work/$m-fp8"
  step "convert-$m" "${fp8q[@]}" convert "fixtures/models/$m" -o "$work/$m-fp8" --quiet
  for d in cpu cuda; do
    step "verify-$m-$d" bash -c "${fp8q[*]} verify fixtures/models/$m $work/$m-fp8 --device $d --input-ids fixtures/models/$m.logits.safetensors --json >$out/verify-$m-$d.json"
    for which in bf16 fp8; do
      src="fixtures/models/$m"; [ "$which" = fp8 ] && src="$work/$m-fp8"
      "${fp8q[@]}" logits "$src" --input-ids "fixtures/models/$m.logits.safetensors" -o "$work/$m-$which-$d.logits.safetensors" --device "$d" --quiet >>"$out/logits.log" 2>&1
    done
  done
  note "  $m verify cpu vs cuda: $("${compare[@]}" reports "$out/verify-$m-cpu.json" "$out/verify-$m-cuda.json" 2>&1 | tail -1)"
  for which in bf16 fp8; do
    note "  $m logits $which cpu vs cuda: $("${compare[@]}" logits "$work/$m-$which-cpu.logits.safetensors" "$work/$m-$which-cuda.logits.safetensors" 2>&1 | tail -1)"
  done
done

if ! skipped synthetic && ! skipped synthetic-make; then
  rm -rf "$work/syn-bf16" "$work/syn-fp8"
  step synthetic-make node --import tsx scripts/make-synthetic-llama.ts --out "$work/syn-bf16" ${SYNTHETIC_ARGS:-} && note "  $(tail -1 "$out/synthetic-make.log")"
  step synthetic-convert "${fp8q[@]}" convert "$work/syn-bf16" -o "$work/syn-fp8" --quiet
  du -sh "$work/syn-bf16" "$work/syn-fp8" | tee -a "$summary"
fi
if ! skipped synthetic && ! skipped synthetic-verify; then
  for t in ${SYNTHETIC_TOKENS:-32 512}; do
    for d in cuda cpu; do
      # Exit code 3 (a failed gate) is expected: random weights fail the KL gate on both devices.
      step "verify-synthetic-$t-$d" bash -c "timeout ${SYNTHETIC_VERIFY_TIMEOUT:-300} ${fp8q[*]} verify $work/syn-bf16 $work/syn-fp8 --device $d --tokens $t --json >$out/verify-synthetic-$t-$d.json; rc=\$?; [ \$rc -eq 0 ] || [ \$rc -eq 3 ]"
    done
    note "  synthetic verify, $t tokens, cpu vs cuda: $("${compare[@]}" reports "$out/verify-synthetic-$t-cpu.json" "$out/verify-synthetic-$t-cuda.json" 2>&1 | tail -1)"
  done
fi
