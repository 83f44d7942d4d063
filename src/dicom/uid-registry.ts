// The UIDs the DICOM Standard defines (PS3.6 Annex A), read from the registry's own rows (data/, source and edition
// in data/README.md): a de-identifier keeps these, since they name classes and syntaxes, never a patient.
import { readFileSync } from 'node:fs';
import { findUp } from '../paths.js';
import { isValidUid } from './uid.js';

export interface StandardUid {
  uid: string;
  name: string;
  /** "SOP Class", "Transfer Syntax", "Well-known frame of reference", "Coding Scheme", … */
  type: string;
  keyword: string;
  retired: boolean;
}

/** PS3.16 Context Group UIDs: defined by the standard, one per CID, but not rows of the registry. */
const CONTEXT_GROUP_ROOT = '1.2.840.10008.6.1.';
const STANDARD_ROOT = '1.2.840.10008.';

let registry: ReadonlyMap<string, StandardUid> | undefined;

/** Every row of the registry by UID; read on first use. */
export function uidRegistry(): ReadonlyMap<string, StandardUid> {
  if (registry) return registry;
  const json = JSON.parse(readFileSync(findUp('src/dicom/data/ps3.6-uid-registry.json'), 'utf8')) as { rowCount: number; uids: StandardUid[] };
  const map = new Map<string, StandardUid>();
  for (const u of json.uids) map.set(u.uid, { uid: u.uid, name: u.name, type: u.type, keyword: u.keyword, retired: u.retired });
  // a cut or duplicated row would silently let a standard UID be remapped
  if (map.size !== json.rowCount) throw new Error(`UID registry holds ${map.size} distinct UIDs, its rowCount says ${json.rowCount}`);
  registry = map;
  return registry;
}

/** UI values are padded to even length with a NUL; some writers pad with a space. */
function trimPadding(s: string): string {
  let e = s.length;
  while (e > 0 && (s.charCodeAt(e - 1) === 0 || s.charCodeAt(e - 1) === 0x20)) e--;
  return e === s.length ? s : s.slice(0, e);
}

/**
 * True when the UID (trailing NUL/space padding ignored) is a row of the registry or a Context Group UID. Any other
 * UID is false, including unlisted ones under the standard's root 1.2.840.10008: the registry is the edition.
 */
export function isStandardUid(uid: string): boolean {
  const u = trimPadding(uid);
  if (!u.startsWith(STANDARD_ROOT)) return false; // every row and every context group lies under the root
  if (uidRegistry().has(u)) return true;
  return u.startsWith(CONTEXT_GROUP_ROOT) && u.length > CONTEXT_GROUP_ROOT.length && isValidUid(u);
}
