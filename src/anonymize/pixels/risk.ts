// The risk gate: whether an instance may carry text burned into its pixels, and so must be cleaned before it
// leaves. It fails closed: anything the policy names is at risk unless a site rule says otherwise.
import { topLevelString } from '../../dicom/values.js';
import type { ParsedDataset } from '../../dicom/walker.js';
import { meets, type BurnedInSite } from './site.js';

export interface RiskVerdict {
  atRisk: boolean;
  /** Why, in fixed words: "Burned In Annotation YES", "SOP class …", "Modality US", "site rule …" (no values of the patient). */
  why: string[];
  /** An encapsulated document (PDF, CDA, STL…): no pixels to clean, so it passes only where a rule allows it. */
  document: boolean;
  /** Burned In Annotation says YES: the modality states that text is there. */
  declared: boolean;
}

const BURNED_IN_ANNOTATION = 0x00280301;
const MODALITY = 0x00080060;
const ENCAPSULATED_DOCUMENT = 0x00420011;
const PIXEL_DATA = 0x7fe00010;

export function assessRisk(ds: ParsedDataset, sopClassUid: string, site: BurnedInSite): RiskVerdict {
  const bia = topLevelString(ds, BURNED_IN_ANNOTATION).trim().toUpperCase();
  const modality = topLevelString(ds, MODALITY).trim().toUpperCase();
  const rules = site.rules.filter((r) => meets(ds, r.when, sopClassUid));
  const why: string[] = [];
  if (bia === 'YES') why.push('Burned In Annotation YES');
  const className = site.sopClasses[sopClassUid];
  if (className) why.push(`SOP class ${className}`);
  if (modality && site.modalities.includes(modality)) why.push(`Modality ${modality}`);
  for (const r of rules) if (r.then === 'at-risk') why.push(`site rule ${r.name}`);
  const document = ds.elements.some((e) => e.tag === ENCAPSULATED_DOCUMENT) || (/^1\.2\.840\.10008\.5\.1\.4\.1\.1\.104\./.test(sopClassUid) && !ds.elements.some((e) => e.tag === PIXEL_DATA));
  const allowed = (effect: string) => rules.some((r) => r.then === effect);
  if (document) return { atRisk: !allowed('allow-document'), why: why.length ? why : ['encapsulated document'], document, declared: false };
  // Burned In Annotation NO on a risky class is believed only where the site trusts the device
  const trusted = bia === 'NO' && allowed('trust');
  return { atRisk: why.length > 0 && !trusted, why, document, declared: bia === 'YES' };
}
