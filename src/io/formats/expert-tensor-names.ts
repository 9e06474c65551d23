// How a fused (3-D) MoE expert tensor is named: a projection parameter on an `experts` module, with
// or without `.weight`. Shared by the FP8-layout reader (which scales belong to which weights) and
// the convert pass (passes/fused-experts.ts), so it lives at the lower of the two layers.

/** Parameter names of fused expert projections (on an `experts` module, with or without `.weight`). */
export const FUSED_EXPERT_PROJECTIONS = ['gate_up_proj', 'down_proj', 'gate_proj', 'up_proj'] as const;
export type FusedProjection = (typeof FUSED_EXPERT_PROJECTIONS)[number];

function fusedProjectionOf(name: string): FusedProjection | undefined {
  return (FUSED_EXPERT_PROJECTIONS as readonly string[]).includes(name) ? (name as FusedProjection) : undefined;
}

/** The fused projection a 3-D tensor is, from its name (`…experts.gate_up_proj` or `…experts.gate_up_proj.weight`). */
export function fusedProjectionOfTensor(name: string): FusedProjection | undefined {
  const parts = name.split('.');
  if (parts[parts.length - 1] === 'weight') parts.pop();
  const projection = fusedProjectionOf(parts[parts.length - 1] ?? '');
  return projection && parts[parts.length - 2] === 'experts' ? projection : undefined;
}
