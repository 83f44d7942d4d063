// One instance, start to finish: parse, match the patient in the crosswalk, clean burned-in text, de-identify, verify.
// The batch command and the pipeline's worker both call this; only the alias source differs.
import { parseDataset, parseFile, type ParsedDataset } from '../dicom/walker.js';
import { topLevelString } from '../dicom/values.js';
import type { AliasSource, PatientAlias, PatientIdentity } from '../dicom/identity.js';
import { anonymize, type AnonymizeResult } from './engine.js';
import { scanForPhi, VerificationError, type GateHit } from './gate.js';
import { identityOf, phiNeedles } from './phi.js';
import type { Profile } from './profile.js';
import { cleanBurnedInText, type PixelOutcome } from './pixels/clean.js';

export interface Deidentified extends AnonymizeResult {
  identity: PatientIdentity;
  alias: PatientAlias;
  accessionAlias: string;
  /** What the gate found; always empty unless the profile keeps everything (then it reports instead of rejecting). */
  gateReport: GateHit[];
  /** What the burned-in text step did with the pixels. */
  pixels: PixelOutcome;
}

let scratch = Buffer.alloc(0);

/**
 * The output data set in one buffer for the gate to parse, without the value of native Pixel Data (the gate does not
 * search pixels, and copying half a megabyte of cold memory cost more than the de-identification itself): where a
 * chunk is a slice of the input holding that value, the value is left out and its header's length set to 0.
 * The buffer is reused from call to call; it is valid until the next call, and the gate runs synchronously.
 */
function gatherForGate(chunks: Uint8Array[], input: ParsedDataset): Buffer {
  const pixels = input.elements.find((e) => e.tag === 0x7fe00010 && !e.fragments && e.length !== 0xffffffff);
  const src = input.buffer;
  let length = 0;
  for (let i = 1; i < chunks.length; i++) length += chunks[i]!.length;
  if (scratch.length < length) scratch = Buffer.allocUnsafe(Math.max(length, scratch.length * 2));
  let at = 0;
  for (let i = 1; i < chunks.length; i++) {
    const c = chunks[i]!;
    const from = c.buffer === src.buffer ? c.byteOffset - src.byteOffset : -1; // offset of this slice in the input
    if (pixels && from >= 0 && from <= pixels.start && from + c.length >= pixels.valueEnd) {
      const head = pixels.valueStart - from;
      scratch.set(c.subarray(0, head), at);
      const lengthAt = at + head - 4; // the 32-bit length ends the header
      if (pixels.encoding.littleEndian) scratch.writeUInt32LE(0, lengthAt);
      else scratch.writeUInt32BE(0, lengthAt);
      at += head;
      const tail = c.subarray(pixels.valueEnd - from);
      scratch.set(tail, at);
      at += tail.length;
    } else {
      scratch.set(c, at);
      at += c.length;
    }
  }
  return scratch.subarray(0, at);
}

/**
 * De-identifies one PS3.10 file. Throws DicomParseError for input that is not readable DICOM and
 * VerificationError (attribute paths, no values) when the gate finds identifying values in the output, and
 * PixelRiskError when an instance at risk of burned-in text cannot be cleaned.
 */
export async function deidentify(file: Buffer, profile: Profile, key: Buffer, aliases: AliasSource): Promise<Deidentified> {
  const { meta, dataset } = parseFile(file);
  return deidentifyParsed(dataset, topLevelString(meta, 0x00020002), profile, key, aliases);
}

/** The same for a data set received over the network (no file meta): its bytes and transfer syntax. */
export async function deidentifyDataset(bytes: Buffer, transferSyntaxUid: string, profile: Profile, key: Buffer, aliases: AliasSource): Promise<Deidentified> {
  return deidentifyParsed(parseDataset(bytes, transferSyntaxUid), '', profile, key, aliases);
}

async function deidentifyParsed(dataset: ParsedDataset, metaSopClassUid: string, profile: Profile, key: Buffer, aliases: AliasSource): Promise<Deidentified> {
  const identity = identityOf(dataset);
  const alias = await aliases.patient(identity);
  const accessionAlias = await aliases.study(alias, {
    studyInstanceUid: topLevelString(dataset, 0x0020000d),
    accessionNumber: topLevelString(dataset, 0x00080050),
  });
  const needles = phiNeedles(dataset, profile);
  const sopClassUid = topLevelString(dataset, 0x00080016) || metaSopClassUid;
  // a "default": "keep" profile is a byte-preservation check: it leaves pixels as it leaves everything else
  const pixels: PixelOutcome = profile.keepsEverything ? { kind: 'not at risk' } : await cleanBurnedInText(dataset, sopClassUid, profile.pixels, needles);
  const result = anonymize({
    dataset,
    sopClassUid,
    profile,
    key,
    needles,
    replacements: { patientName: alias.aliasName, patientId: alias.aliasId, accessionNumber: accessionAlias, dateOffsetDays: alias.dateOffsetDays },
    pixels: pixels.kind === 'cleaned' ? pixels.pixels : undefined,
  });
  // the gate reads the output as written, not the engine's intentions
  const hits = scanForPhi(parseDataset(gatherForGate(result.chunks, dataset), dataset.transferSyntaxUid), needles, profile, new Set([alias.aliasName, alias.aliasId, accessionAlias]));
  // a "default": "keep" profile keeps identifying values on purpose (a byte-preservation check): report, do not reject
  if (hits.length && !profile.keepsEverything) throw new VerificationError(hits);
  return { ...result, identity, alias, accessionAlias, gateReport: hits, pixels };
}
