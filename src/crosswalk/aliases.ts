// New aliases: IDs, sex-consistent names and date offsets. Given names come from @faker-js/faker's English
// person data (male, female, and its "generic" list for patients whose sex is O or absent); family names from its
// 473 last names. An alias never shares a name component with the patient's real name.
import { randomBytes, randomInt } from 'node:crypto';
import { en } from '@faker-js/faker';

export type AliasSex = 'M' | 'F' | 'O';

export const GIVEN_NAMES: Readonly<Record<AliasSex, readonly string[]>> = {
  M: en.person!.first_name!.male!,
  F: en.person!.first_name!.female!,
  O: en.person!.first_name!.generic!,
};
export const FAMILY_NAMES: readonly string[] = en.person!.last_name!.generic!;

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
