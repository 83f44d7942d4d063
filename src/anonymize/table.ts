// PS3.15 Table E.1-1 and Table E.3.10-1, read from the standard's own rows (data/, edition and source in
// data/README.md). Nothing of the table is copied into code: the edition is the data file.
import { readFileSync } from 'node:fs';
import { findUp } from '../paths.js';

import { OPTION_KEYS, type OptionKey } from '../config/index.js';

export { OPTION_KEYS, type OptionKey };

export type TableCode = 'D' | 'Z' | 'X' | 'U' | 'K' | 'C' | 'Z/D' | 'X/Z' | 'X/D' | 'X/Z/D' | 'X/Z/U*';

export interface Code {
  codeValue: string;
  codingSchemeDesignator: string;
  codeMeaning: string;
}

export interface TableRow {
  tag: string;
  keyword: string | null;
  name: string;
  vr: string | null;
  isPattern: boolean;
  isPrivate: boolean;
  /** Matches when (tag & mask) === value; both null for the private row. */
  tagMask: number | null;
  tagValue: number | null;
  basicProfile: TableCode;
  options: Partial<Record<OptionKey, TableCode>>;
}

export interface ConfidentialityTable {
  edition: string;
  rows: TableRow[];
  basicProfileCode: Code;
  optionCodes: Record<OptionKey, Code>;
  optionNames: Record<OptionKey, string>;
}

export interface SafePrivateRow {
  group: number;
  elementOffset: number;
  privateCreator: string;
  vr: string | null;
  meaning: string;
}

function dataFile(name: string): string {
  return findUp(`src/anonymize/data/${name}`);
}

let table: ConfidentialityTable | undefined;

export function confidentialityTable(): ConfidentialityTable {
  if (table) return table;
  const json = JSON.parse(readFileSync(dataFile('ps3.15-table-e1-1.json'), 'utf8'));
  const optionCodes = {} as Record<OptionKey, Code>;
  const optionNames = {} as Record<OptionKey, string>;
  for (const col of json.optionColumns) {
    optionCodes[col.key as OptionKey] = col.deidentificationMethodCode;
    optionNames[col.key as OptionKey] = col.option;
  }
  const rows: TableRow[] = json.attributes.map((a: Record<string, unknown>) => {
    const options: Partial<Record<OptionKey, TableCode>> = {};
    for (const k of OPTION_KEYS) if (a[k]) options[k] = a[k] as TableCode;
    return {
      tag: a.tag as string,
      keyword: (a.keyword as string | null) ?? null,
      name: a.name as string,
      vr: (a.vr as string | null) ?? null,
      isPattern: a.isPattern as boolean,
      isPrivate: a.isPrivate as boolean,
      tagMask: a.tagMask ? parseInt(a.tagMask as string, 16) >>> 0 : null,
      tagValue: a.tagValue ? parseInt(a.tagValue as string, 16) >>> 0 : null,
      basicProfile: a.basicProfile as TableCode,
      options,
    };
  });
  table = { edition: json.edition, rows, basicProfileCode: json.basicProfileCode, optionCodes, optionNames };
  return table;
}

let safe: SafePrivateRow[] | undefined;

export function safePrivateTable(): SafePrivateRow[] {
  if (safe) return safe;
  const json = JSON.parse(readFileSync(dataFile('ps3.15-table-e3-10-1-safe-private.json'), 'utf8'));
  safe = json.attributes.map((a: Record<string, string | null>) => ({
    group: parseInt(a.group!, 16),
    elementOffset: parseInt(a.elementOffset!, 16),
    privateCreator: a.privateCreator!,
    vr: a.vr,
    meaning: a.meaning ?? '',
  }));
  return safe!;
}
