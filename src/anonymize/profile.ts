// The effective rule of every attribute: PS3.15 Table E.1-1 (basic profile), the options a site switches on,
// DPHIANT's crosswalk replacements, and the site profile, in that order of precedence (last wins).
// `dphiant profile show`, the README and the engine all read their rules from here.
import { readFileSync } from 'node:fs';
import { formatTag, parseTag, keywordOf } from '../dicom/dictionary.js';
import { confidentialityTable, OPTION_KEYS, safePrivateTable, type OptionKey, type TableCode, type TableRow } from './table.js';
import { defaultPixelPolicy, pixelPolicy, type PixelPolicy, type PixelSettings } from './pixels/clean.js';
import { DEFAULT_SAFETY_PASS, describeSafetyPass, safetyAction, safetyVr, vocabularyTags, type SafetyPassSettings, type Within } from './safety.js';

export type AliasField = 'patientName' | 'patientId' | 'accessionNumber';

export type Action =
  | { kind: 'remove' }
  | { kind: 'empty' }
  | { kind: 'dummy' }
  | { kind: 'keep' }
  | { kind: 'clean' }
  | { kind: 'uid' }
  | { kind: 'hash' }
  | { kind: 'fixed'; value: string }
  | { kind: 'alias'; field: AliasField }
  /** Not in the table, decided by nothing else: the safety pass decides by VR (src/anonymize/safety.ts). */
  | { kind: 'safety' };

export interface Rule {
  action: Action;
  /** Where the rule comes from, e.g. "PS3.15 2026d basic profile X/Z", "Retain UIDs Option", "site profile". */
  source: string;
}

export type Options = Record<OptionKey, boolean>;

export const NO_OPTIONS: Options = Object.fromEntries(OPTION_KEYS.map((k) => [k, false])) as Options;

/** What one action does, in words (profile show, README, reports). */
export function describeAction(a: Action): string {
  switch (a.kind) {
    case 'remove':
      return 'remove';
    case 'empty':
      return 'replace with a zero-length value';
    case 'dummy':
      return 'replace with a dummy value valid for its VR (sequences: keep the structure, replace every value that could identify)';
    case 'keep':
      return 'keep (sequences: apply the rules to the items)';
    case 'clean':
      return "clean: dates shifted by the patient's offset, identifying values in text redacted (sequences: in their items too)";
    case 'uid':
      return "replace with 2.25.<first 128 bits of HMAC-SHA-256(site key, UID)>";
    case 'hash':
      return 'replace with HMAC-SHA-256(site key, value) in hex, cut to the VR maximum';
    case 'fixed':
      return `replace with ${JSON.stringify(a.value)}`;
    case 'safety':
      return 'decided by its VR (the safety pass rows at the end)';
    case 'alias':
      return `replace with the crosswalk's ${a.field === 'patientName' ? 'alias name (same sex as the patient)' : a.field === 'patientId' ? 'alias ID' : 'study alias'}`;
  }
}

/**
 * Combined codes. DPHIANT does not carry PS3.3's module tables, so it does not know an attribute's type in the
 * instance's IOD; it takes the last code of the combination, which conforms to every type (a Type 1 attribute
 * needs D, a Type 2 accepts Z, a Type 3 accepts either) and carries none of the original value:
 * Z/D, X/D, X/Z/D → D; X/Z → Z; X/Z/U* → U (keep the sequence, replace the UIDs it contains, clean the rest).
 */
export function resolveCode(code: TableCode): Action {
  const last = code.split('/').at(-1)!.replace('*', '');
  switch (last) {
    case 'X':
      return { kind: 'remove' };
    case 'Z':
      return { kind: 'empty' };
    case 'D':
      return { kind: 'dummy' };
    case 'K':
      return { kind: 'keep' };
    case 'C':
      return { kind: 'clean' };
    case 'U':
      return { kind: 'uid' };
    default:
      throw new Error(`unknown action code ${code}`);
  }
}

/** DPHIANT's replacements from the crosswalk, over the table (PS3.15 allows any non-identifying value for Z/D). */
const CROSSWALK_REPLACEMENTS: Record<number, AliasField> = {
  0x00100010: 'patientName',
  0x00100020: 'patientId',
  0x00080050: 'accessionNumber',
};

export type ActionSpec = 'keep' | 'remove' | 'empty' | 'dummy' | 'uid' | 'hash' | 'clean' | { fixed: string } | { crosswalk: AliasField };

/**
 * A site profile file (JSON):
 * { "name": "…", "options": { "retainLongModifiedDates": true, … },
 *   "attributes": { "StudyDescription": "keep", "(0010,1010)": "remove", "InstitutionName": { "fixed": "RESEARCH" },
 *                   "private:GEMS_PARM_01:(0043,xx27)": "keep" } }
 */
export interface SiteProfile {
  name?: string;
  /** "keep": every attribute (table, crosswalk replacements, private) is kept unless named in `attributes`. */
  default?: 'keep';
  options?: Partial<Options>;
  attributes?: Record<string, ActionSpec>;
  /** Free text outside the table: { "shortText": "redact" | "remove", "longText": "redact" | "remove" }. */
  safetyPass?: Partial<SafetyPassSettings>;
}

function specToAction(spec: ActionSpec, where: string): Action {
  if (typeof spec === 'string') {
    const kinds = ['keep', 'remove', 'empty', 'dummy', 'uid', 'hash', 'clean'] as const;
    if (!(kinds as readonly string[]).includes(spec)) throw new Error(`${where}: unknown action ${JSON.stringify(spec)}`);
    return { kind: spec } as Action;
  }
  if (spec && typeof spec === 'object' && 'fixed' in spec && typeof spec.fixed === 'string') return { kind: 'fixed', value: spec.fixed };
  if (spec && typeof spec === 'object' && 'crosswalk' in spec && ['patientName', 'patientId', 'accessionNumber'].includes(spec.crosswalk))
    return { kind: 'alias', field: spec.crosswalk };
  throw new Error(`${where}: an action is keep, remove, empty, dummy, uid, hash, clean, {"fixed": "…"} or {"crosswalk": "patientName|patientId|accessionNumber"}`);
}

export function loadSiteProfile(file: string): SiteProfile {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`site profile ${file}: ${(e as Error).message}`);
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw new Error(`site profile ${file}: must hold a JSON object`);
  const p = json as SiteProfile;
  if (p.default !== undefined && p.default !== 'keep') throw new Error(`site profile ${file}: default may only be "keep"`);
  for (const k of Object.keys(p)) if (!['name', 'default', 'options', 'attributes', 'safetyPass'].includes(k)) throw new Error(`site profile ${file}: unknown key ${k}`);
  for (const [k, v] of Object.entries(p.safetyPass ?? {})) {
    if (!['shortText', 'longText'].includes(k)) throw new Error(`site profile ${file}: unknown safetyPass key ${k} (shortText, longText)`);
    if (v !== 'redact' && v !== 'remove') throw new Error(`site profile ${file}: safetyPass.${k} is "redact" or "remove"`);
  }
  for (const k of Object.keys(p.options ?? {})) if (!(OPTION_KEYS as readonly string[]).includes(k)) throw new Error(`site profile ${file}: unknown option ${k}`);
  return p;
}

const SAFETY_PASS = 'DPHIANT safety pass (not in Table E.1-1)';
const VOCABULARY = 'DPHIANT vocabulary allow-list (not in Table E.1-1)';

const hex4 = (n: number) => n.toString(16).toUpperCase().padStart(4, '0');

export class Profile {
  readonly options: Options;
  readonly name: string;
  /** True when the site profile keeps everything it does not name (a byte-preservation check, not a de-identification). */
  readonly keepsEverything: boolean;
  private readonly byTag = new Map<number, Rule>();
  private readonly patterns: { row: TableRow; rule: Rule }[] = [];
  private readonly privateRule: Rule;
  /** "GROUP:OFFSET:creator" → rule, for safe private attributes and site rules on private attributes. */
  private readonly privateRules = new Map<string, Rule>();
  private readonly siteByTag = new Map<number, Rule>();
  readonly safetyPass: SafetyPassSettings;
  private readonly resolved = new Map<number, Rule>();
  private readonly safetyActions: Record<Within, Map<string, Action>> = { normal: new Map(), replace: new Map(), redact: new Map() };
  private readonly kept = new Map<string, Map<number, boolean>>();

  /** Burned-in text: the risk gate's settings, masks and rules (pixels/clean.ts). */
  readonly pixels: PixelPolicy;

  constructor(options: Partial<Options> = {}, site: SiteProfile = {}, pixels: PixelPolicy = defaultPixelPolicy()) {
    this.pixels = pixels;
    this.options = { ...NO_OPTIONS, ...site.options, ...options };
    this.safetyPass = { ...DEFAULT_SAFETY_PASS, ...site.safetyPass };
    this.name = site.name ?? 'PS3.15 basic profile';
    this.keepsEverything = site.default === 'keep';
    if (this.options.retainLongFullDates && this.options.retainLongModifiedDates)
      throw new Error('Retain Longitudinal Temporal Information: Full Dates and Modified Dates options are mutually exclusive');
    const table = confidentialityTable();
    for (const row of table.rows) {
      const rule = this.tableRule(row, table.edition);
      if (row.isPrivate) continue;
      if (row.isPattern) this.patterns.push({ row, rule });
      else this.byTag.set(row.tagValue!, rule);
    }
    const privateRow = table.rows.find((r) => r.isPrivate)!;
    this.privateRule = this.keepsEverything
      ? { action: { kind: 'keep' }, source: 'site profile default keep' }
      : { action: { kind: 'remove' }, source: `PS3.15 ${table.edition} ${privateRow.basicProfile} (private attributes)` };
    if (this.options.retainSafePrivate) {
      for (const s of safePrivateTable()) {
        this.privateRules.set(privateKey(s.group, s.elementOffset, s.privateCreator), { action: { kind: 'keep' }, source: 'Retain Safe Private Option (Table E.3.10-1)' });
      }
    }
    for (const [tag, field] of Object.entries(CROSSWALK_REPLACEMENTS)) {
      this.byTag.set(Number(tag), { action: { kind: 'alias', field }, source: 'DPHIANT crosswalk replacement' });
    }
    if (this.keepsEverything) {
      for (const tag of this.byTag.keys()) this.byTag.set(tag, { action: { kind: 'keep' }, source: 'site profile default keep' });
      for (const p of this.patterns) p.rule = { action: { kind: 'keep' }, source: 'site profile default keep' };
    }
    for (const [key, spec] of Object.entries(site.attributes ?? {})) {
      const rule: Rule = { action: specToAction(spec, `site profile attribute ${key}`), source: `site profile${site.name ? ` ${site.name}` : ''}` };
      const m = /^private:(.+):\(?([0-9A-Fa-f]{4}),?xx([0-9A-Fa-f]{2})\)?$/.exec(key);
      if (m) {
        this.privateRules.set(privateKey(parseInt(m[2]!, 16), parseInt(m[3]!, 16), m[1]!), rule);
        continue;
      }
      const tag = parseTag(key);
      if ((tag >>> 16) % 2 === 1) throw new Error(`site profile attribute ${key}: name private attributes as "private:<creator>:(gggg,xxee)"`);
      this.siteByTag.set(tag, rule);
    }
  }

  private tableRule(row: TableRow, edition: string): Rule {
    // an attribute retained by any active option is kept; one cleaned by an option is cleaned; else the basic profile
    const active = OPTION_KEYS.filter((k) => this.options[k] && row.options[k]);
    const codes = active.map((k) => row.options[k]!);
    const names = confidentialityTable().optionNames;
    const pick = (code: TableCode) => active.filter((k) => row.options[k] === code).map((k) => names[k]).join(', ');
    if (codes.includes('K')) return { action: { kind: 'keep' }, source: pick('K') };
    if (codes.includes('C')) return { action: { kind: 'clean' }, source: pick('C') };
    return { action: resolveCode(row.basicProfile), source: `PS3.15 ${edition} basic profile ${row.basicProfile}` };
  }

  /**
   * Rule of a standard (even-group) attribute. Attributes the table does not list go to the safety pass, except the
   * vocabulary allow-list (kept); with a "default": "keep" site profile they are kept.
   */
  ruleFor(tag: number): Rule {
    // rules never change after construction; the engine, the needles and the gate ask for every element
    let rule = this.resolved.get(tag);
    if (!rule) this.resolved.set(tag, (rule = this.resolveRule(tag)));
    return rule;
  }

  private resolveRule(tag: number): Rule {
    const site = this.siteByTag.get(tag);
    if (site) return site;
    const exact = this.byTag.get(tag);
    if (exact) return exact;
    if ((tag & 0xffff) === 0x0000) return { action: { kind: 'keep' }, source: 'group length (dropped when its group changes)' };
    for (const p of this.patterns) if (((tag & p.row.tagMask!) >>> 0) === p.row.tagValue) return p.rule;
    if (this.keepsEverything) return { action: { kind: 'keep' }, source: 'site profile default keep' };
    if (vocabularyTags().has(tag)) return { action: { kind: 'keep' }, source: VOCABULARY };
    return { action: { kind: 'safety' }, source: SAFETY_PASS };
  }

  /** What a rule does to an element of this tag and VR: the rule's own action, or the safety pass's for its VR. */
  actionOf(rule: Action, tag: number, vr: string, within: Within = 'normal'): Action {
    return rule.kind === 'safety' ? this.safetyAction(safetyVr(tag, vr), within) : rule;
  }

  /** The action the safety pass takes on an element of this VR (`within`: see src/anonymize/safety.ts). */
  safetyAction(vr: string, within: Within = 'normal'): Action {
    const byVr = this.safetyActions[within];
    let action = byVr.get(vr);
    if (!action) byVr.set(vr, (action = safetyAction(vr, within, this.options, this.safetyPass)));
    return action;
  }

  /** An attribute of the vocabulary allow-list: coded or vendor vocabulary, kept as it is. */
  isVocabulary(tag: number): boolean {
    return (tag >>> 16) % 2 === 0 && this.ruleFor(tag).source === VOCABULARY;
  }

  /**
   * True when the output keeps this standard attribute's original value (a K option, a site "keep", the vocabulary,
   * the safety pass under Full Dates or Retain UIDs): its value is then wanted in the output, not a value to hunt.
   * Private attributes: only under a "default": "keep" site profile.
   */
  keepsOriginal(tag: number, vr: string): boolean {
    if ((tag >>> 16) % 2 === 1) return this.keepsEverything;
    let byTag = this.kept.get(vr);
    if (!byTag) this.kept.set(vr, (byTag = new Map()));
    let keeps = byTag.get(tag);
    if (keeps === undefined) byTag.set(tag, (keeps = this.actionOf(this.ruleFor(tag).action, tag, vr).kind === 'keep'));
    return keeps;
  }

  /** Rule of a private data element (gggg,bbee) whose block bb is reserved by `creator`. */
  ruleForPrivate(tag: number, creator: string | undefined): Rule {
    if (creator !== undefined) {
      const r = this.privateRules.get(privateKey(tag >>> 16, tag & 0xff, creator));
      if (r) return r;
    }
    return this.privateRule;
  }

  /** Every rule of the table with its effective action, plus site rules on attributes outside it. */
  describe(): { tag: string; keyword: string; name: string; action: string; source: string }[] {
    const table = confidentialityTable();
    const out = table.rows
      .filter((r) => !r.isPrivate)
      .map((r) => {
        const rule = r.isPattern ? this.patterns.find((p) => p.row === r)!.rule : this.ruleFor(r.tagValue!);
        return { tag: r.tag, keyword: r.keyword ?? '', name: r.name, action: describeAction(rule.action), source: rule.source };
      });
    for (const [tag, rule] of this.siteByTag) {
      if (!table.rows.some((r) => r.tagValue === tag && !r.isPattern))
        out.push({ tag: formatTag(tag), keyword: keywordOf(tag) ?? '', name: '', action: describeAction(rule.action), source: rule.source });
    }
    out.push({ tag: '(gggg,eeee) odd gggg', keyword: '', name: 'Private attributes', action: describeAction(this.privateRule.action), source: this.privateRule.source });
    for (const [key, rule] of this.privateRules) {
      if (rule.source.startsWith('site profile')) out.push({ tag: key, keyword: '', name: 'private attribute', action: describeAction(rule.action), source: rule.source });
    }
    if (this.options.retainSafePrivate) out.push({ tag: 'Table E.3.10-1', keyword: '', name: `${safePrivateTable().length} safe private attributes`, action: 'keep', source: 'Retain Safe Private Option' });
    if (!this.keepsEverything) {
      for (const tag of [...vocabularyTags()].sort((a, b) => a - b)) {
        if (this.ruleFor(tag).source === VOCABULARY) out.push({ tag: formatTag(tag), keyword: keywordOf(tag) ?? '', name: '', action: describeAction({ kind: 'keep' }), source: VOCABULARY });
      }
      for (const r of describeSafetyPass(this.options, this.safetyPass)) {
        out.push({ tag: `any other ${r.vrs}`, keyword: '', name: 'attributes no rule above names', action: r.action, source: SAFETY_PASS });
      }
    }
    return out;
  }

  activeOptions(): OptionKey[] {
    return OPTION_KEYS.filter((k) => this.options[k]);
  }
}

function privateKey(group: number, elementOffset: number, creator: string): string {
  return `${hex4(group)}:${elementOffset.toString(16).toUpperCase().padStart(2, '0')}:${creator.trim()}`;
}

/** The profile the configuration describes: its site profile file (if any) with the configured options on top, and the burned-in text policy. */
export function profileFromSettings(
  settings: { profile: string; pixels?: Partial<PixelSettings> } & Partial<Options>,
  overrides: Partial<Options> = {},
): { profile: Profile; options: Partial<Options>; site: SiteProfile; pixels: PixelPolicy } {
  const site = settings.profile ? loadSiteProfile(settings.profile) : {};
  const options: Partial<Options> = { ...site.options };
  for (const k of OPTION_KEYS) if (settings[k]) options[k] = true;
  Object.assign(options, overrides);
  const pixels = pixelPolicy(settings.pixels);
  return { profile: new Profile(options, site, pixels), options, site, pixels };
}
