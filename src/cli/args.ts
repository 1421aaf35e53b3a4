// Command-line plumbing shared by every command: parsing, typed flag values, file reading with
// one-line errors.

import { readFileSync } from 'node:fs';
import { parseArgs, ParseArgsConfig } from 'node:util';

export class UsageError extends Error {
  override name = 'UsageError';
}

export type Options = NonNullable<ParseArgsConfig['options']>;
export type Values = Record<string, string | boolean | undefined>;

/** Parses argv; `positionals` is an exact count or [min, max]. */
export function parse(argv: string[], options: Options, positionals: number | [number, number] = 0): { values: Values; positionals: string[] } {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: positionals !== 0, strict: true });
  } catch (e) {
    const message = (e as Error).message.split('\n')[0];
    const hint = /ambiguous/.test(message) ? ": write --name=VALUE for a value that starts with '-' (e.g. --alpha=-1..1)" : '';
    throw new UsageError(`${message}${hint}`);
  }
  const [min, max] = typeof positionals === 'number' ? [positionals, positionals] : positionals;
  const count = parsed.positionals.length;
  if (count < min || count > max) {
    throw new UsageError(min === max ? `expected ${min} argument(s), got ${count}` : `expected ${min} to ${max === Infinity ? 'any number of' : max} arguments, got ${count}`);
  }
  return parsed as { values: Values; positionals: string[] };
}

export function required(values: Values, name: string): string {
  const v = values[name];
  if (typeof v !== 'string' || v === '') throw new UsageError(`--${name} is required`);
  return v;
}

export function integer(values: Values, name: string, min: number): number | undefined {
  const value = values[name];
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer >= ${min}, got ${value}`);
  return n;
}

export function number(values: Values, name: string, check: (n: number) => boolean, what: string): number | undefined {
  const value = values[name];
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value === '' || !check(n)) throw new UsageError(`--${name} must be ${what}, got ${value}`);
  return n;
}

export function bool(values: Values, name: string): boolean | undefined {
  const value = values[name];
  if (value === undefined) return undefined;
  if (value === 'true' || value === 'false') return value === 'true';
  throw new UsageError(`--${name} must be true or false, got ${value}`);
}

export function readBytes(path: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new Error(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

export function readJson(path: string): unknown {
  const text = new TextDecoder().decode(readBytes(path));
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${path} is not valid JSON (${(e as Error).message})`);
  }
}

/** A flag that takes one of a few words. */
export function choice<T extends string>(values: Values, name: string, allowed: readonly T[]): T | undefined {
  const value = values[name];
  if (value === undefined) return undefined;
  if (!allowed.includes(value as T)) throw new UsageError(`--${name} must be ${allowed.join(' or ')}, got ${value}`);
  return value as T;
}
