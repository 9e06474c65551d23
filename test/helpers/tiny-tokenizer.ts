// A small but real tokenizer.json for the fixture models (vocab 1024), written by tests instead of
// committed: a GPT-2-style byte-level BPE whose ids 0..255 are the bytes themselves, a few merges
// (ids 256…), and `<s>` (id 1000) added in front of every text by a TemplateProcessing
// post-processor, like Llama 3's BOS. Every id is below the fixtures' vocab_size.

import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const TINY_BOS_ID = 1000;
export const TINY_MERGES: readonly (readonly [string, string])[] = [
  ['Ġ', 't'],
  ['h', 'e'],
  ['Ġt', 'he'],
  ['i', 'n'],
];

/** GPT-2's byte → printable-character table (bytes_to_unicode). */
function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  const map: string[] = new Array<string>(256);
  bs.forEach((b, i) => (map[b] = String.fromCodePoint(cs[i]!)));
  return map;
}

export function tinyTokenizerJson(): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  bytesToUnicode().forEach((c, byte) => (vocab[c] = byte));
  TINY_MERGES.forEach(([a, b], i) => (vocab[a + b] = 256 + i));
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [{ id: TINY_BOS_ID, content: '<s>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [TINY_BOS_ID], tokens: ['<s>'] } },
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: TINY_MERGES.map(([a, b]) => `${a} ${b}`),
    },
  };
}

export async function writeTinyTokenizer(dir: string): Promise<void> {
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(tinyTokenizerJson()));
}

/**
 * What the tiny tokenizer gives for ASCII text, computed independently of it: BOS, then the
 * bytes, with the merges applied greedily in rank order within each pre-token (" the" → one id).
 * Good for texts whose words contain no overlapping merge candidates (the tests' texts).
 */
export function expectedTinyIds(text: string): number[] {
  const ids: number[] = [TINY_BOS_ID];
  // ByteLevel's regex splits on word boundaries keeping the leading space with the word.
  for (const word of text.match(/ ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+/g) ?? []) {
    let parts = [...word].map((c) => (c === ' ' ? 'Ġ' : c));
    for (const [a, b] of TINY_MERGES) {
      const next: string[] = [];
      for (let i = 0; i < parts.length; i++) {
        if (parts[i] === a && parts[i + 1] === b) {
          next.push(a + b);
          i++;
        } else next.push(parts[i]!);
      }
      parts = next;
    }
    for (const p of parts) {
      const merge = TINY_MERGES.findIndex(([a, b]) => a + b === p);
      ids.push(merge >= 0 ? 256 + merge : p === 'Ġ' ? 32 : p.charCodeAt(0));
    }
  }
  return ids;
}
