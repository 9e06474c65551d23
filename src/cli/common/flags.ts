// Typed flag tables: a command's options are declared once, as data, and both the commander
// options and the type of the flags object its action receives come from that declaration.

import { Option, type Command } from 'commander';
import { UsageError } from './errors.js';
import { collect } from './options.js';

/** One option: commander's spec (`-o, --output <dir>`), its help text, and how its value is read. */
export interface FlagDef {
  readonly spec: string;
  readonly description: string;
  /** boolean: a switch; string: one value; list: repeatable, values collected in order. */
  readonly kind: 'boolean' | 'string' | 'list';
  readonly default?: string;
  /** Commander refuses any other value (exit 2) before the command runs. */
  readonly choices?: readonly string[];
}

export type FlagTable = Readonly<Record<string, FlagDef>>;

/**
 * The flags object for a table: a free string value with a default is always present from the
 * command line; every other value may be absent (and is, when callers in code leave it out; a
 * choice flag's default then comes from choiceOf).
 */
type Required<D> = D extends { kind: 'string'; default: string } ? (D extends { choices: readonly string[] } ? false : true) : false;

export type FlagValues<T extends FlagTable> = {
  -readonly [K in keyof T as Required<T[K]> extends true ? K : never]: string;
} & {
  -readonly [K in keyof T as Required<T[K]> extends true ? never : K]?: T[K] extends { kind: 'boolean' } ? boolean : T[K] extends { kind: 'list' } ? string[] : string;
};

/**
 * A choice flag's value checked against the table's own list (the one commander enforces on the
 * command line), for callers in code; absent → the flag's default.
 */
export function choiceOf<C extends string>(def: { readonly spec: string; readonly choices: readonly C[]; readonly default?: string }, value: string | undefined): C {
  const v = value ?? def.default;
  const found = def.choices.find((c) => c === v);
  if (found === undefined) throw new UsageError(`invalid ${longName(def.spec)} "${value}": expected ${def.choices.join(' or ')}`);
  return found;
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
