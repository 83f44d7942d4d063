// PS3.10 files: the file meta group (always explicit VR little endian) and the data set after it.
import { LONG_HEADER_VRS } from './vr.js';

export interface Part10 {
  /** Preamble, "DICM" and group 0002, as in the file. */
  meta: Buffer;
  /** The data set bytes exactly as stored, in `transferSyntaxUid`. */
  dataset: Buffer;
  transferSyntaxUid: string;
  sopClassUid: string;
  sopInstanceUid: string;
}

/** Splits a PS3.10 file by walking its group 0002 elements (a (0002,0000) value is not trusted). */
export function splitPart10(file: Buffer): Part10 {
  if (file.length < 132 || file.toString('latin1', 128, 132) !== 'DICM') throw new Error('not a DICOM PS3.10 file (no DICM prefix)');
  let off = 132;
  const values = new Map<number, string>();
  while (off + 8 <= file.length && file.readUInt16LE(off) === 0x0002) {
    const element = file.readUInt16LE(off + 2);
    const vr = file.toString('latin1', off + 4, off + 6);
    let length: number;
    let header: number;
    if (LONG_HEADER_VRS.has(vr)) {
      length = file.readUInt32LE(off + 8);
      header = 12;
    } else {
      length = file.readUInt16LE(off + 6);
      header = 8;
    }
    if (off + header + length > file.length) throw new Error(`file meta element (0002,${element.toString(16).padStart(4, '0')}) runs past the end`);
    if (vr === 'UI') values.set(element, file.toString('latin1', off + header, off + header + length).replace(/[\0 ]+$/, ''));
    off += header + length;
  }
  const transferSyntaxUid = values.get(0x0010);
  if (!transferSyntaxUid) throw new Error('file meta has no Transfer Syntax UID (0002,0010)');
  return {
    meta: file.subarray(0, off),
    dataset: file.subarray(off),
    transferSyntaxUid,
    sopClassUid: values.get(0x0002) ?? '',
    sopInstanceUid: values.get(0x0003) ?? '',
  };
}
