// Test inputs: the shared real-world DICOM files (when ../shared is beside the clone) and byte comparison helpers.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { inflateRawSync } from 'node:zlib';
import { repoRoot } from '../../tools/devstack/orthanc.js';
import { splitPart10 } from '../../src/dicom/part10.js';
import { TS } from '../../src/dicom/transfer-syntax.js';

export const SHARED_DICOM = path.resolve(repoRoot, '../shared/data/dicom');

/** The shared sample files, or [] (with a message) in a clone that has no ../shared. */
export function sharedDicomFiles(): string[] {
  if (!existsSync(SHARED_DICOM)) {
    console.log(`      (skipping the shared sample files: ${SHARED_DICOM} is absent; synthetic files cover the same transfer syntaxes)`);
    return [];
  }
  return readdirSync(SHARED_DICOM)
    .filter((f) => f.endsWith('.dcm'))
    .sort()
    .map((f) => path.join(SHARED_DICOM, f));
}

/**
 * The data set of a PS3.10 file as bytes to compare. A deflated data set is compared inflated: DCMTK re-deflates
 * on every send (the same data, other bytes), so its deflate stream is not the sender's.
 */
export function datasetBytes(file: Buffer): { ts: string; bytes: Buffer; sopInstanceUid: string } {
  const p = splitPart10(file);
  const bytes = p.transferSyntaxUid === TS.DeflatedExplicitVRLittleEndian ? inflateRawSync(p.dataset) : p.dataset;
  return { ts: p.transferSyntaxUid, bytes, sopInstanceUid: p.sopInstanceUid };
}

export function datasetOf(filePath: string) {
  return datasetBytes(readFileSync(filePath));
}
