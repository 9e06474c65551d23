// How commands talk to the terminal: one place decides between a live spinner (TTY), plain lines
// (pipes, CI logs), silence (--quiet) and a single JSON document (--json, stdout kept clean).

import ora, { type Ora } from 'ora';
import { formatBytes } from '../../io/sizes.js';
import { redactSecrets } from './redact.js';

export interface OutputMode {
  readonly json: boolean;
  readonly quiet: boolean;
  readonly tty: boolean;
}

/**
 * A live spinner needs a terminal that reports a width: a pseudo-terminal of 0 columns (`script`
 * without a terminal, some CI runners) would make the spinner's line arithmetic redraw forever, so
 * it gets plain lines, as pipes do.
 */
export function outputMode(opts: { json?: boolean; quiet?: boolean }, stream: Pick<NodeJS.WriteStream, 'isTTY' | 'columns'> = process.stderr): OutputMode {
  const columns = stream.columns;
  const width = typeof columns === 'number' && Number.isFinite(columns) && columns >= 20;
  return { json: opts.json === true, quiet: opts.quiet === true, tty: stream.isTTY === true && width && process.env['CI'] === undefined };
}

/** Messages for humans go to stderr, so stdout carries only results (tables or JSON). */
export function info(mode: OutputMode, message: string): void {
  if (!mode.quiet && !mode.json) process.stderr.write(redactSecrets(`${message}\n`));
}

export function warn(mode: OutputMode, message: string): void {
  if (!mode.json || !mode.quiet) process.stderr.write(redactSecrets(`warning: ${message}\n`));
}

export function printJson(value: unknown): void {
  process.stdout.write(redactSecrets(`${JSON.stringify(value, null, 2)}\n`));
}

/** Byte progress: a spinner with rate and ETA on a TTY, a line every ~10% otherwise. */
export class ByteProgress {
  private spinner: Ora | undefined;
  private readonly start = Date.now();
  private lastDecile = -1;
  private label = '';

  constructor(
    private readonly mode: OutputMode,
    private readonly title: string,
  ) {
    if (!mode.quiet && !mode.json && mode.tty) this.spinner = ora({ text: title, stream: process.stderr }).start();
  }

  item(label: string): void {
    this.label = redactSecrets(label);
  }

  update(done: number, total: number): void {
    if (this.mode.quiet || this.mode.json) return;
    const seconds = (Date.now() - this.start) / 1000;
    const rate = seconds > 0 ? done / seconds : 0;
    // Clamped: a plan's byte total is an estimate for some entries (the MLA split reads kv_b_proj twice).
    const eta = rate > 0 ? Math.max(0, (total - done) / rate) : 0;
    const pct = total > 0 ? Math.min(100, (100 * done) / total) : 100;
    const text = `${this.title} ${pct.toFixed(1)}% ${formatBytes(done)}/${formatBytes(total)} ${formatBytes(rate)}/s ETA ${eta.toFixed(0)}s ${this.label}`;
    if (this.spinner) {
      this.spinner.text = text;
      return;
    }
    const decile = Math.floor(pct / 10);
    if (decile !== this.lastDecile) {
      this.lastDecile = decile;
      process.stderr.write(`${text}\n`);
    }
  }

  /** A phase before the bytes start (calibration …): the spinner's text on a TTY, a plain line otherwise. */
  note(text: string): void {
    if (this.spinner) this.spinner.text = redactSecrets(`${this.title}: ${text}`);
    else info(this.mode, text);
  }

  succeed(text: string): void {
    if (this.spinner) this.spinner.succeed(redactSecrets(text));
    else {
      // Plain lines come every 10%: end on 100% even when the last update fell short of it.
      if (this.lastDecile >= 0 && this.lastDecile < 10) info(this.mode, `${this.title} 100%`);
      info(this.mode, text);
    }
  }

  fail(): void {
    this.spinner?.stop();
  }
}
