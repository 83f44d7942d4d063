// One instance, start to finish: parse, match the patient in the crosswalk, de-identify, verify.
// The batch command and the pipeline's worker both call this; only the alias source differs.
import { parseDataset, parseFile, type ParsedDataset } from '../dicom/walker.js';
import { stringValue, specificCharacterSet } from '../dicom/values.js';
import type { AliasSource, PatientAlias, PatientIdentity } from '../crosswalk/types.js';
import { anonymize, type AnonymizeResult } from './engine.js';
import { scanForPhi, VerificationError } from './gate.js';
import { identityOf, phiNeedles } from './phi.js';
import type { Profile } from './profile.js';

export interface Deidentified extends AnonymizeResult {
  identity: PatientIdentity;
  alias: PatientAlias;
  accessionAlias: string;
}

function topString(ds: ParsedDataset, tag: number): string {
  const el = ds.elements.find((e) => e.tag === tag);
  return el ? stringValue(ds, el, specificCharacterSet(ds)) : '';
}

/**
 * De-identifies one PS3.10 file. Throws DicomParseError for input that is not readable DICOM and
 * VerificationError (attribute paths, no values) when the gate finds identifying values in the output.
 */
export async function deidentify(file: Buffer, profile: Profile, key: Buffer, aliases: AliasSource): Promise<Deidentified> {
  const { meta, dataset } = parseFile(file);
  const identity = identityOf(dataset);
  const alias = await aliases.patient(identity);
  const accessionAlias = await aliases.study(alias, {
    studyInstanceUid: topString(dataset, 0x0020000d),
    accessionNumber: topString(dataset, 0x00080050),
  });
  const needles = phiNeedles(dataset, profile);
  const sopClassUid = topString(dataset, 0x00080016) || topString(meta, 0x00020002);
  const result = anonymize({
    dataset,
    sopClassUid,
    profile,
    key,
    needles,
    replacements: { patientName: alias.aliasName, patientId: alias.aliasId, accessionNumber: accessionAlias, dateOffsetDays: alias.dateOffsetDays },
  });
  if (!profile.keepsEverything) {
    const output = Buffer.concat(result.chunks.slice(1));
    const hits = scanForPhi(parseDataset(output, dataset.transferSyntaxUid), needles, profile);
    if (hits.length) throw new VerificationError(hits);
  }
  return { ...result, identity, alias, accessionAlias };
}
