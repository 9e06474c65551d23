// The module tree implied by tensor names ("model.layers.3.mlp.down_proj.weight" → module
// model.layers.3.mlp.down_proj holding parameter "weight"), the structure MLC's nn.Mutator walks.

export interface ModuleNode {
  /** Dotted path from the root ("" for the root). */
  readonly path: string;
  /** Last path component. */
  readonly name: string;
  readonly children: Map<string, ModuleNode>;
  /** Parameter name ("weight", "bias", …) → full tensor name. */
  readonly params: Map<string, string>;
}

function node(path: string, name: string): ModuleNode {
  return { path, name, children: new Map(), params: new Map() };
}

export function buildModuleTree(tensorNames: Iterable<string>): ModuleNode {
  const root = node('', '');
  for (const full of tensorNames) {
    const parts = full.split('.');
    const param = parts.pop()!;
    let cur = root;
    for (const part of parts) {
      let next = cur.children.get(part);
      if (!next) {
        next = node(cur.path ? `${cur.path}.${part}` : part, part);
        cur.children.set(part, next);
      }
      cur = next;
    }
    cur.params.set(param, full);
  }
  return root;
}

/** Depth-first, children in natural order (layer 2 before layer 10). */
export function* walkModules(root: ModuleNode): Generator<ModuleNode> {
  yield root;
  const keys = [...root.children.keys()].sort(naturalCompare);
  for (const k of keys) yield* walkModules(root.children.get(k)!);
}

export function naturalCompare(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}
