// Typed flag tables: a command's options are declared once, as data. From one table come the
// commander options (addFlags), the type of the raw flags object its action receives
// (FlagValues), and the typed options object the command runs on (readFlags), each value checked
// once by its row's `parse`. A command keeps only what spans several flags (conflicts, combinations).
// A new flag is one row in its command's table (commands/<command>-flags.ts); its value reaches
// the command typed, parsed and checked, under the row's key or its `to` field.

import { Option, type Command } from 'commander';
import { UsageError } from './errors.js';
import { collect } from './options.js';

/** Reads one value of a flag (`flag` is its long name, for the message); throws a UsageError on a bad one. */
export type FlagParser<V> = (text: string, flag: string) => V;

/** One option: commander's spec (`-o, --output <dir>`), its help text, and how its value is read. */
export interface FlagDef {
  readonly spec: string;
  readonly description: string;
  /** boolean: a switch; string: one value; list: repeatable, values collected in order. */
  readonly kind: 'boolean' | 'string' | 'list';
  readonly default?: string;
  /** Commander refuses any other value (exit 2) before the command runs. */
  readonly choices?: readonly string[];
  /** How a value becomes the options field (each item of a list); absent: the text itself (a choice: checked against `choices`). */
  readonly parse?: FlagParser<unknown>;
  /** The options field it fills, when its name there is not the table key. */
  readonly to?: string;
}

export type FlagTable = Readonly<Record<string, FlagDef>>;

/**
 * The raw flags object for a table, as commander gives it to the action: strings, switches and
 * lists of strings, by table key. Every value may be absent (callers in code leave flags out);
 * readFlags then applies the row's default.
 */
export type FlagValues<T extends FlagTable> = {
  -readonly [K in keyof T]?: T[K] extends { kind: 'boolean' } ? boolean : T[K] extends { kind: 'list' } ? string[] : string;
};

type FieldOf<K, D> = D extends { to: infer F extends string } ? F : K;
type ParsedOf<D> = D extends { parse: FlagParser<infer V> } ? V : D extends { choices: readonly (infer C)[] } ? C : string;
type OptionOf<D> = D extends { kind: 'boolean' } ? boolean : D extends { kind: 'list' } ? ParsedOf<D>[] : ParsedOf<D>;
/** Switches and lists always have a value (false, []), and so does a flag with a default. */
type Present<D> = D extends { kind: 'boolean' | 'list' } ? true : D extends { default: string } ? true : false;

/** The options object readFlags builds from a table: each row's field, its value parsed. */
export type FlagOptions<T extends FlagTable> = {
  readonly [K in keyof T as Present<T[K]> extends true ? FieldOf<K, T[K]> : never]: OptionOf<T[K]>;
} & {
  readonly [K in keyof T as Present<T[K]> extends true ? never : FieldOf<K, T[K]>]?: OptionOf<T[K]>;
};

/**
 * The typed options of a command from its raw flags: every value read by its row (absent → the
 * row's default), a switch false unless given (a `--no-x` switch true), a list [] unless given.
 */
export function readFlags<T extends FlagTable>(table: T, flags: FlagValues<T>): FlagOptions<T> {
  const raw: Readonly<Record<string, unknown>> = flags;
  const options: Record<string, unknown> = {};
  for (const [key, def] of Object.entries(table)) {
    const field = def.to ?? key;
    const value = raw[key];
    if (def.kind === 'boolean') options[field] = typeof value === 'boolean' ? value : def.spec.startsWith('--no-');
    else if (def.kind === 'list') options[field] = (Array.isArray(value) ? value.map(String) : []).map((v) => readValue(def, v));
    else {
      const text = typeof value === 'string' ? value : def.default;
      if (text !== undefined) options[field] = readValue(def, text);
    }
  }
  // The loop above fills exactly the fields FlagOptions<T> names, with the values it says.
  return options as FlagOptions<T>;
}

function readValue(def: FlagDef, text: string): unknown {
  if (def.parse) return def.parse(text, longName(def.spec));
  if (def.choices) return choiceOf({ spec: def.spec, choices: def.choices }, text);
  return text;
}

/**
 * A choice flag's value checked against the table's own list (the one commander enforces on the
 * command line), for callers in code; absent → the flag's default.
 */
export function choiceOf<C extends string>(def: { readonly spec: string; readonly choices: readonly C[]; readonly default?: string }, value: string | undefined): C {
  const v = value ?? def.default;
  const found = def.choices.find((c) => c === v);
  if (found === undefined) throw new UsageError(`invalid ${longName(def.spec)} "${value}": expected ${listOf(def.choices)}`);
  return found;
}

/** `a or b`, `a, b or c`. */
function listOf(words: readonly string[]): string {
  return words.length <= 2 ? words.join(' or ') : `${words.slice(0, -1).join(', ')} or ${words.at(-1)}`;
}

function longName(spec: string): string {
  return /--[a-z0-9-]+/.exec(spec)?.[0] ?? spec;
}

/** Registers every flag of `table` on `command`, in the table's order (the order of --help). */
export function addFlags(command: Command, table: FlagTable): Command {
  for (const [key, def] of Object.entries(table)) {
    const option = new Option(def.spec, def.description);
    // The table's key is the flags object's property: a spec whose name commander reads differently is a bug here.
    if (option.attributeName() !== key) throw new Error(`flag table: "${def.spec}" is read as ${option.attributeName()}, not ${key}`);
    if (def.choices) option.choices(def.choices);
    if (def.kind === 'list') option.argParser(collect).default([]);
    else if (def.default !== undefined) option.default(def.default);
    command.addOption(option);
  }
  return command;
}
