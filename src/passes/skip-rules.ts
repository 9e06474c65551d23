// Named predicates for modules the BlockScaleQuantize pass must leave in their source dtype.
// Mirrors MLC LLM's utils.py (is_final_fc, is_moe_gate) with patterns users can extend.

/** Final projection to the vocabulary: quantizing it costs accuracy for little memory. */
export function isFinalFc(modulePath: string): boolean {
  const last = modulePath.split('.').pop() ?? '';
  return last === 'lm_head' || last === 'head' || last === 'embed_out' || last === 'output';
}

export function isEmbedding(modulePath: string): boolean {
  const last = modulePath.split('.').pop() ?? '';
  return /(^|_)(embed|embeddings|embed_tokens|wte|wpe|tok_embeddings|word_embeddings)$/.test(last);
}

/**
 * MoE router: a module named `gate`, `*_gate` (shared_expert_gate) or `router`. MLC also
 * requires ≤ 256 outputs; a name match inside an MoE model is enough here, and the size test
 * catches routers of models whose config does not say they are MoE. `gate_proj` and
 * `gate_up_proj` are ordinary projections and do not match.
 */
export function isMoeRouter(modulePath: string, outFeatures: number, modelIsMoe: boolean): boolean {
  const last = modulePath.split('.').pop() ?? '';
  if (!/(^|_)gate$|^router$/.test(last)) return false;
  return modelIsMoe || outFeatures <= 256;
}

/**
 * User exclusion patterns: a plain string matches a module path exactly or as a dotted suffix
 * ("lm_head", "mlp.down_proj" matches every layer's down_proj); `re:` marks a regular expression
 * (compressed-tensors' syntax), tested with search semantics against the module path.
 */
export interface ExcludePattern {
  readonly source: string;
  matches(modulePath: string): boolean;
}

export function compileExcludePattern(source: string, flag = '--exclude'): ExcludePattern {
  if (source.startsWith('re:')) {
    let re: RegExp;
    try {
      re = new RegExp(source.slice(3));
    } catch (e) {
      throw new Error(`invalid ${flag} regular expression "${source}": ${(e as Error).message}`);
    }
    return { source, matches: (p) => re.test(p) };
  }
  return {
    source,
    matches: (p) => p === source || p.endsWith(`.${source}`) || p.startsWith(`${source}.`) || p.includes(`.${source}.`),
  };
}
