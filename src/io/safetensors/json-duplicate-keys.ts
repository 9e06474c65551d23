// Duplicate keys in untrusted JSON. JSON.parse silently keeps the last of two equal keys, so a
// safetensors header naming one tensor twice (two data ranges, one kept) or an index mapping a
// tensor to two shards would be read without a word. This is a linear scan of text that
// JSON.parse has already accepted: it only tokenises strings and brackets, and decodes a key only
// when it holds an escape (`"a"` and `"\u0061"` are the same key).

/**
 * The first key that occurs twice in the object at `path` (a list of keys from the top-level
 * object; empty = the top-level object itself), or undefined. `text` must be valid JSON.
 */
export function findDuplicateKey(text: string, path: readonly string[] = []): string | undefined {
  const scanner = new Scanner(text);
  scanner.skipWhitespace();
  return scanner.duplicateIn(path);
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

class Scanner {
  private pos = 0;

  constructor(private readonly text: string) {}

  skipWhitespace(): void {
    const t = this.text;
    while (this.pos < t.length) {
      const c = t.charCodeAt(this.pos);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return;
      this.pos++;
    }
  }

  /** At `{`: walk the object; collect keys when `path` is empty, else descend into path[0]. */
  duplicateIn(path: readonly string[]): string | undefined {
    if (this.text.charCodeAt(this.pos) !== 0x7b) return undefined; // not an object: nothing to check
    this.pos++;
    const seen = path.length === 0 ? new Set<string>() : undefined;
    for (;;) {
      this.skipWhitespace();
      if (this.text.charCodeAt(this.pos) === 0x7d) {
        this.pos++;
        return undefined;
      }
      const key = this.readKey();
      if (seen) {
        if (seen.has(key)) return key;
        seen.add(key);
      }
      this.skipWhitespace();
      this.pos++; // ':'
      this.skipWhitespace();
      if (!seen && key === path[0] && this.text.charCodeAt(this.pos) === 0x7b) {
        // Every occurrence of a repeated path key is scanned (JSON.parse kept only the last).
        const found = this.duplicateIn(path.slice(1));
        if (found !== undefined) return found;
      } else {
        this.skipValue();
      }
      this.skipWhitespace();
      if (this.text.charCodeAt(this.pos) !== 0x2c) {
        this.pos++; // '}'
        return undefined;
      }
      this.pos++;
    }
  }

  private readKey(): string {
    const start = this.pos; // at the opening quote
    const escaped = this.skipString();
    const raw = this.text.slice(start, this.pos);
    return escaped ? (JSON.parse(raw) as string) : raw.slice(1, -1);
  }

  /** From an opening quote to just past the closing one; true when the string holds escapes. */
  private skipString(): boolean {
    const t = this.text;
    let escaped = false;
    this.pos++;
    while (this.pos < t.length) {
      const c = t.charCodeAt(this.pos);
      if (c === BACKSLASH) {
        escaped = true;
        this.pos += 2;
      } else if (c === QUOTE) {
        this.pos++;
        return escaped;
      } else {
        this.pos++;
      }
    }
    return escaped;
  }

  /** Past one value of any kind: strings are skipped whole so brackets inside them don't count. */
  private skipValue(): void {
    const t = this.text;
    let depth = 0;
    while (this.pos < t.length) {
      const c = t.charCodeAt(this.pos);
      if (c === QUOTE) {
        this.skipString();
        if (depth === 0) return;
        continue;
      }
      if (c === 0x7b || c === 0x5b) depth++;
      else if (c === 0x7d || c === 0x5d) {
        if (depth === 0) return; // the end of the enclosing object: a scalar just ended
        depth--;
        if (depth === 0) {
          this.pos++;
          return;
        }
      } else if (depth === 0 && c === 0x2c) return;
      this.pos++;
    }
  }
}
