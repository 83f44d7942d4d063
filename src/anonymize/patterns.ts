// Identifying values that have the same shape whoever the patient is: written dates, telephone numbers, e-mail
// addresses, URLs and host names, ID-like tokens, and the name after a person's title. Free text holds values of
// people and places the instance's own needles (phi.ts) cannot foresee, so redact() removes these shapes too.
// One compiled expression per shape family, each run once over a value; every replacement keeps the value's length
// in characters, so VR maximum lengths still hold.

const WORD = '\\p{L}\\p{N}\\p{M}';
/**
 * Token boundaries for numeric shapes: not inside a word or number, and a dot between digits joins (so a part of
 * 1.2.840.10008 or 0.4882812 is never a date, a phone number or an ID; UIDs are the UID needles' business).
 */
const B = `(?<![${WORD}]|\\p{N}\\.)`;
const A = `(?![${WORD}]|\\.\\p{N})`;

const MONTH = '(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\\.?';
const ORDINAL = '(?:st|nd|rd|th)?';

/** Generic top-level domains, and country codes (checked further in hostLike: "Normal.No" is a typo, not a host). */
const GENERIC_TLDS = 'com|org|net|edu|gov|mil|int|info|biz|io|health|local|localdomain|lan|internal|intranet|corp|home|invalid|test|example|arpa';
const COUNTRY_TLDS = 'uk|de|fr|nl|be|ch|at|it|es|se|no|dk|fi|ca|au|nz|jp|cn|kr|in|br|us|eu|ie|pl|il|sg|hk|tw|za|ru|mx';
const COUNTRY = new Set(COUNTRY_TLDS.split('|'));
/** Second-level labels under which a country code is a host name even with two labels (nhs.uk, co.jp). */
const SECOND_LEVEL = new Set(['co', 'ac', 'nhs', 'org', 'gov', 'com', 'net', 'edu', 'med', 'health', 'or', 'ne', 'go']);

const SHAPES = new RegExp(
  [
    `(?<email>(?<![${WORD}._%+-])[${WORD}._%+-]+@[${WORD}-]+(?:\\.[${WORD}-]+)+)`,
    `(?<url>(?<![${WORD}])(?:[a-z][a-z0-9+.-]*://|www\\.)[^\\s<>"'\\\\]+)`,
    `(?<host>(?<![${WORD}.@-])(?:[${WORD}](?:[${WORD}-]*[${WORD}])?\\.)+(?:${GENERIC_TLDS}|${COUNTRY_TLDS})(?![${WORD}-]|\\.[${WORD}]))`,
    `(?<ip>${B}\\d{1,3}(?:\\.\\d{1,3}){3}${A})`,
    // 2023-04-05, 2023/4/5, 2023.04.05; 05/04/2023, 4/5/23, 05.04.2023, 05-04-2023
    `(?<date>${B}(?:\\d{4}[-/.]\\d{1,2}[-/.]\\d{1,2}|\\d{1,2}[-/.]\\d{1,2}[-/.](?:\\d{4}|\\d{2})` +
      // 5 April 2023, 05-APR-2023, 5th Apr '23; April 5, 2023, April 2023; 20230405
      `|\\d{1,2}${ORDINAL}[ -]?${MONTH}[ ,-]*(?:\\d{4}|'?\\d{2})|${MONTH}\\s*(?:\\d{1,2}${ORDINAL},?\\s*)?\\d{4}` +
      `|(?:19|20)\\d\\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\\d|3[01]))${A})`,
    // +44 20 7946 0958; (617) 555-0199; 617.555.0199, 617 555 0199
    `(?<phone>(?<![${WORD}+])\\+\\d{1,3}(?:[ .-]?\\(?\\d{1,5}\\)?){2,6}${A}|(?<![${WORD}])\\(\\d{2,5}\\)[ .-]?\\d{2,5}(?:[ .-]\\d{2,5}){0,3}${A}|${B}\\d{3}(?<sep>[. ])\\d{3}\\k<sep>\\d{4}${A})`,
    // 555-0199, 1-800-555-0199, 12-3456-7
    `(?<hyphenated>${B}\\d{1,5}(?:-\\d{1,8}){1,5}${A})`,
    // MRN7654321, A12345, 7654321B: a token with letters and digits
    `(?<mixed>(?<![${WORD}])(?=[${WORD}]*\\p{N})(?=[${WORD}]*\\p{L})[${WORD}]+(?![${WORD}]))`,
    `(?<digits>${B}\\d{6,}${A})`,
  ].join('|'),
  'giu',
);

/**
 * A title, then the name: one or two capitalised words, initials before them. Case-sensitive, and no all-capitals
 * titles: MR, MS and DR are also modalities and diagnoses ("MR BRAIN", "MS lesion", "DR CHEST").
 */
const TITLED_NAME = new RegExp(`(?<![${WORD}])(?:Dr|Mr|Mrs|Ms|Mx|Miss|Prof|Professor)(?:\\.\\s*|\\s+)((?:\\p{Lu}\\.\\s*)*\\p{Lu}[\\p{L}\\p{M}'’-]*(?:\\s+\\p{Lu}[\\p{L}\\p{M}'’-]*)?)`, 'gu');

const digitCount = (s: string) => s.replace(/\D+/g, '').length;

/** X for every character (code point) of `s`. */
export function xOut(s: string): string {
  let n = 0;
  for (const _ of s) n++;
  return 'X'.repeat(n);
}

function hostLike(host: string): boolean {
  const labels = host.split('.');
  const tld = labels[labels.length - 1]!.toLowerCase();
  if (!COUNTRY.has(tld)) return true;
  if (host !== host.toLowerCase()) return false;
  return labels.length >= 3 || SECOND_LEVEL.has(labels[labels.length - 2]!);
}

type Groups = Record<string, string | undefined>;

function replaceShape(match: string, g: Groups): string {
  if (g.url !== undefined) {
    // sentence punctuation after a URL is not part of it
    const m = /[.,;:!?)\]]+$/.exec(match);
    return m ? xOut(match.slice(0, m.index)) + m[0] : xOut(match);
  }
  if (g.host !== undefined) return hostLike(match) ? xOut(match) : match;
  if (g.ip !== undefined) return match.split('.').every((o) => Number(o) <= 255) ? xOut(match) : match;
  if (g.phone !== undefined) {
    const d = digitCount(match);
    return d >= 7 && d <= 15 ? xOut(match) : match;
  }
  if (g.hyphenated !== undefined) {
    // a telephone number (7+ digits) or a hyphenated ID (3+ groups, 6+ digits); 2-3 and 120-140 are ranges, and
    // 3+ rising groups a list of values (b-values "DWI 0-500-1000")
    const groups = match.split('-').map(Number);
    const d = digitCount(match);
    if (groups.length >= 3 && groups.every((v, i) => i === 0 || v > groups[i - 1]!)) return match;
    return d >= 7 || (d >= 6 && groups.length >= 3) ? xOut(match) : match;
  }
  // T1, 3D, b1000, DWI2 are protocol words; an ID has 5+ digits
  if (g.mixed !== undefined) return digitCount(match) >= 5 ? xOut(match) : match;
  return xOut(match); // email, date, digits
}

/**
 * The text with every shape above replaced by X characters (a title stays, the name after it goes). Same length
 * in characters as `text`.
 */
export function redactPatterns(text: string): string {
  if (text.length < 2) return text;
  // a pure function of the text, and device and protocol labels repeat in every instance: remember (bounded)
  const known = remembered.get(text);
  if (known !== undefined) return known;
  const out = shapesRedacted(text);
  if (remembered.size >= REMEMBERED_MAX) remembered.clear();
  remembered.set(text, out);
  return out;
}

const remembered = new Map<string, string>();
const REMEMBERED_MAX = 10_000;

function shapesRedacted(text: string): string {
  // every shape holds a digit, an @ or a dot: most short values (labels, kernels) have none and skip the big regex
  let out = /[\d@.]/.test(text) ? text.replace(SHAPES, (match: string, ...rest: unknown[]) => replaceShape(match, rest[rest.length - 1] as Groups)) : text;
  if (/[DMP]/.test(out)) out = out.replace(TITLED_NAME, (match: string, name: string) => match.slice(0, match.length - name.length) + xOut(name));
  return out;
}
