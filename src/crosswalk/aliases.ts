// New aliases: IDs, sex-consistent names and date offsets. The names are data (data/names.json, source in
// data/README.md: @faker-js/faker 10.6.0's English lists): given names for male, female, and a "generic" list for
// patients whose sex is O or absent; 473 family names. An alias never shares a name component with the real name.
import { randomBytes, randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { findUp } from '../paths.js';

export type AliasSex = 'M' | 'F' | 'O';

interface NameLists {
  counts: { male: number; female: number; generic: number; family: number };
  given: { male: string[]; female: string[]; generic: string[] };
  family: string[];
}

const names = JSON.parse(readFileSync(findUp('src/crosswalk/data/names.json'), 'utf8')) as NameLists;
// a cut file would quietly shrink the alias space
for (const [list, n] of [[names.given.male, names.counts.male], [names.given.female, names.counts.female], [names.given.generic, names.counts.generic], [names.family, names.counts.family]] as const) {
  if (list.length !== n || n === 0) throw new Error(`names.json: a list holds ${list.length} names, its count says ${n}`);
}

export const GIVEN_NAMES: Readonly<Record<AliasSex, readonly string[]>> = {
  M: names.given.male,
  F: names.given.female,
  O: names.given.generic,
};
export const FAMILY_NAMES: readonly string[] = names.family;

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

export function aliasSexOf(sex: string): AliasSex {
  const s = sex.trim().toUpperCase();
  return s === 'M' || s === 'F' ? s : 'O';
}

/** prefix + n random base-32 characters (40 bits for n = 8). */
export function randomAliasId(prefix: string, n = 8): string {
  return prefix + Array.from(randomBytes(n), (b) => BASE32[b & 31]).join('');
}

/** prefix + the counter, zero-padded to 8 digits. */
export function counterAliasId(prefix: string, counter: number): string {
  return prefix + String(counter).padStart(8, '0');
}

/** FAMILY^GIVEN in upper case, with no component in common with the real name. */
export function aliasName(sex: AliasSex, realName: string): string {
  const real = new Set(realName.toUpperCase().split(/[\^=\s,]+/).filter(Boolean));
  const given = GIVEN_NAMES[sex];
  for (;;) {
    const family = FAMILY_NAMES[randomInt(FAMILY_NAMES.length)]!.toUpperCase();
    const first = given[randomInt(given.length)]!.toUpperCase();
    if (!real.has(family) && !real.has(first) && `${family}^${first}` !== realName.toUpperCase()) return `${family}^${first}`;
  }
}

export function dateOffset(minDays: number, maxDays: number): number {
  return randomInt(minDays, maxDays + 1);
}
