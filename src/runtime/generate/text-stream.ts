// Incremental detokenization: the text each new token adds, for streaming. A token's text depends
// on its neighbours (SentencePiece drops the space of a sequence's first word; byte-fallback
// tokens only make a character together), so each step decodes a short window that starts a few
// tokens back and emits what grew past the previous window's text, holding back while the text
// ends in an incomplete UTF-8 sequence (U+FFFD) — the prefix/read-offset scheme of Hugging Face's
// text-generation-inference. Cost per token is the window, not the whole sequence.

import type { ModelTokenizer } from '../text/model-tokenizer.js';

/** Tokens of context decoded before the new ones. */
const CONTEXT_TOKENS = 5;

export class TextStream {
  private readonly ids: number[];
  private prefixOffset: number;
  private readOffset: number;
  /** Text per pushed token (empty while a character is incomplete; flush() adds the rest to the last). */
  readonly pieces: string[] = [];

  constructor(
    private readonly tokenizer: ModelTokenizer,
    prompt: readonly number[],
  ) {
    this.ids = [...prompt];
    this.readOffset = prompt.length;
    this.prefixOffset = Math.max(0, prompt.length - CONTEXT_TOKENS);
  }

  /** Text that `id` completes (maybe empty). */
  push(id: number): string {
    this.ids.push(id);
    const piece = this.advance(false);
    this.pieces.push(piece);
    return piece;
  }

  /** Whatever is held back at the end (an incomplete character, printed as U+FFFD). */
  flush(): string {
    const rest = this.advance(true);
    if (rest !== '' && this.pieces.length > 0) this.pieces[this.pieces.length - 1] += rest;
    return rest;
  }

  get text(): string {
    return this.pieces.join('');
  }

  private advance(force: boolean): string {
    const prefix = this.tokenizer.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const full = this.tokenizer.decode(this.ids.slice(this.prefixOffset));
    if (full.length <= prefix.length || (!force && full.endsWith('\uFFFD'))) return '';
    // The window's text normally extends the prefix's; if a decoder rewrote it, emit the new tail anyway.
    const piece = full.startsWith(prefix) ? full.slice(prefix.length) : full.slice(Math.min(prefix.length, full.length));
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    return piece;
  }
}
