// The burned-in text policy as data: the shipped defaults (src/anonymize/data/burned-in.json) with a site file on
// top. A site file adds masks and rules, and replaces a list it names (sopClasses, modalities, allowWords).
// Everything here is plain data, so the policy crosses into worker threads as it is.
import { readFileSync } from 'node:fs';
import { tagOfKeyword } from '../../dicom/dictionary.js';
import { uidRegistry } from '../../dicom/uid-registry.js';
import { numberValues, topLevelString } from '../../dicom/values.js';
import type { ParsedDataset } from '../../dicom/walker.js';
import { findUp } from '../../paths.js';
import type { Box } from './types.js';

/** A header condition: keyword → the value (text: equal ignoring case and padding; number: equal), one of a list, or a part. */
export type Condition = string | number | (string | number)[] | { contains: string };
export type When = Record<string, Condition>;

export interface Mask {
  name: string;
  when: When;
  regions: Box[];
}

/** at-risk: the instance is at risk; trust: its Burned In Annotation NO is believed; allow-document: an encapsulated document passes. */
export type RuleEffect = 'at-risk' | 'trust' | 'allow-document';
export interface SiteRule {
  name: string;
  when: When;
  then: RuleEffect;
}

export interface BurnedInSite {
  /** Names of the files read, defaults first. */
  sources: string[];
  /** SOP Class UID → its PS3.6 name. */
  sopClasses: Record<string, string>;
  modalities: string[];
  /** Modality (or "*" for all) → upper-case words OCR may leave in place. */
  allowWords: Record<string, string[]>;
  masks: Mask[];
  rules: SiteRule[];
}

export const DEFAULT_SITE_FILE = 'src/anonymize/data/burned-in.json';
const EFFECTS: readonly RuleEffect[] = ['at-risk', 'trust', 'allow-document'];

function fail(file: string, what: string): never {
  throw new Error(`burned-in text file ${file}: ${what}`);
}

function checkWhen(file: string, where: string, when: unknown): When {
  if (!when || typeof when !== 'object' || Array.isArray(when) || Object.keys(when).length === 0) fail(file, `${where}.when must be an object of header conditions`);
  for (const [k, v] of Object.entries(when)) {
    if (k !== 'SOPClassUID' && tagOfKeyword(k) === undefined) fail(file, `${where}.when: ${k} is not a DICOM keyword`);
    const ok = (x: unknown) => typeof x === 'string' || (typeof x === 'number' && Number.isFinite(x));
    const contains = v && typeof v === 'object' && !Array.isArray(v) && typeof (v as { contains?: unknown }).contains === 'string';
    if (!ok(v) && !contains && !(Array.isArray(v) && v.length > 0 && v.every(ok))) fail(file, `${where}.when.${k} must be a text, a number, a list of them, or {"contains": "…"}`);
  }
  return when as When;
}

function checkBox(file: string, where: string, b: unknown): Box {
  const r = b as Record<string, unknown>;
  const n = (k: string, min: number) => Number.isInteger(r?.[k]) && (r[k] as number) >= min;
  if (!n('x', 0) || !n('y', 0) || !n('w', 1) || !n('h', 1)) fail(file, `${where} must be {"x", "y", "w", "h"} in pixels (x, y ≥ 0; w, h ≥ 1)`);
  return { x: r.x as number, y: r.y as number, w: r.w as number, h: r.h as number };
}

/** SOP class keywords (or UIDs) → UID → name, through the PS3.6 registry. */
function sopClassesOf(file: string, list: unknown): Record<string, string> {
  if (!Array.isArray(list)) fail(file, 'sopClasses must be a list of PS3.6 keywords or UIDs');
  const byKeyword = new Map([...uidRegistry().values()].filter((u) => u.type === 'SOP Class').map((u) => [u.keyword, u]));
  const out: Record<string, string> = {};
  for (const k of list) {
    const u = byKeyword.get(k) ?? uidRegistry().get(k);
    if (!u || u.type !== 'SOP Class') fail(file, `sopClasses: ${JSON.stringify(k)} is not a SOP class of PS3.6`);
    out[u.uid] = u.name + (u.retired ? ' (retired)' : '');
  }
  return out;
}

const KEYS = ['about', 'sopClasses', 'modalities', 'allowWords', 'masks', 'rules'];

function readPart(file: string, into: BurnedInSite): void {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    fail(file, (e as Error).message);
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) fail(file, 'must hold a JSON object');
  for (const k of Object.keys(json)) if (!KEYS.includes(k)) fail(file, `unknown key ${k} (${KEYS.join(', ')})`);
  if (json.sopClasses !== undefined) into.sopClasses = sopClassesOf(file, json.sopClasses);
  if (json.modalities !== undefined) {
    if (!Array.isArray(json.modalities) || !json.modalities.every((m) => typeof m === 'string' && /^[A-Z0-9_ ]{1,16}$/.test(m))) fail(file, 'modalities must be a list of Modality values (CS)');
    into.modalities = json.modalities as string[];
  }
  if (json.allowWords !== undefined) {
    const a = json.allowWords as Record<string, unknown>;
    if (!a || typeof a !== 'object' || Array.isArray(a)) fail(file, 'allowWords must map a Modality (or "*") to a list of words');
    into.allowWords = {};
    for (const [m, words] of Object.entries(a)) {
      if (!Array.isArray(words) || !words.every((w) => typeof w === 'string' && w.length > 0 && w.length <= 16)) fail(file, `allowWords.${m} must be a list of words of 1 to 16 characters`);
      into.allowWords[m] = words.map((w: string) => w.toUpperCase());
    }
  }
  for (const k of ['masks', 'rules']) if (json[k] !== undefined && !Array.isArray(json[k])) fail(file, `${k} must be a list`);
  for (const [i, m] of ((json.masks as unknown[]) ?? []).entries()) {
    const o = m as Record<string, unknown>;
    const where = `masks[${i}]`;
    if (typeof o?.name !== 'string' || !o.name) fail(file, `${where}.name must be a text`);
    if (!Array.isArray(o.regions) || o.regions.length === 0) fail(file, `${where}.regions must list at least one rectangle`);
    into.masks.push({ name: o.name, when: checkWhen(file, where, o.when), regions: o.regions.map((b, j) => checkBox(file, `${where}.regions[${j}]`, b)) });
  }
  for (const [i, r] of ((json.rules as unknown[]) ?? []).entries()) {
    const o = r as Record<string, unknown>;
    const where = `rules[${i}]`;
    if (typeof o?.name !== 'string' || !o.name) fail(file, `${where}.name must be a text`);
    if (!EFFECTS.includes(o.then as RuleEffect)) fail(file, `${where}.then must be one of ${EFFECTS.join(', ')}`);
    into.rules.push({ name: o.name, when: checkWhen(file, where, o.when), then: o.then as RuleEffect });
  }
}

/** The shipped defaults, then the site file when one is given. Throws with the file and the key at fault. */
export function loadBurnedInSite(siteFile = ''): BurnedInSite {
  const site: BurnedInSite = { sources: [], sopClasses: {}, modalities: [], allowWords: {}, masks: [], rules: [] };
  for (const file of [findUp(DEFAULT_SITE_FILE), ...(siteFile ? [siteFile] : [])]) {
    readPart(file, site);
    site.sources.push(file);
  }
  return site;
}

const norm = (s: string) => s.replace(/[\0 ]+$/, '').trim().toUpperCase();

/** Whether the data set's top level meets every condition. SOPClassUID may be given as a PS3.6 keyword. */
export function meets(ds: ParsedDataset, when: When, sopClassUid: string): boolean {
  for (const [keyword, cond] of Object.entries(when)) {
    const tag = tagOfKeyword(keyword)!;
    const el = ds.elements.find((e) => e.tag === tag);
    const isNumber = el && ['US', 'SS', 'UL', 'SL', 'FL', 'FD'].includes(el.vr);
    const value = keyword === 'SOPClassUID' ? sopClassUid : el ? (isNumber ? String(numberValues(ds, el)[0] ?? '') : topLevelString(ds, tag)) : '';
    const one = (c: string | number) => {
      if (typeof c === 'number') return value !== '' && Number(value) === c;
      if (keyword === 'SOPClassUID') return value === c || [...uidRegistry().values()].some((u) => u.keyword === c && u.uid === value);
      return norm(value) === norm(c);
    };
    const ok = Array.isArray(cond) ? cond.some(one) : typeof cond === 'object' ? norm(value).includes(norm(cond.contains)) : one(cond);
    if (!ok) return false;
  }
  return true;
}
