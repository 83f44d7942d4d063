// Planting PHI into real files: top-level elements added to a PS3.10 file in its own encoding (deflated data sets
// inflated and deflated again), everything else left byte for byte, so a real sample carries identifying values
// where the confidentiality table does not look.
import { deflateRawSync } from 'node:zlib';
import { splitPart10 } from '../../src/dicom/part10.js';
import { TS } from '../../src/dicom/transfer-syntax.js';
import { parseFile } from '../../src/dicom/walker.js';
import { encodeDataset, encodeElementChunks, type Element } from '../../src/dicom/writer.js';

/** The file with `elements` added at the top level (an existing element of the same tag is replaced). */
export function plant(file: Buffer, elements: Element[]): Buffer {
  const { dataset } = parseFile(file);
  const p = splitPart10(file);
  const tags = new Set(elements.map((e) => e.tag));
  const pending = [...elements].sort((a, b) => a.tag - b.tag);
  const parts: Uint8Array[] = [];
  const flushBefore = (tag: number) => {
    while (pending.length && pending[0]!.tag < tag) parts.push(...encodeElementChunks([pending.shift()!], dataset.encoding));
  };
  for (const el of dataset.elements) {
    flushBefore(el.tag);
    if (tags.has(el.tag) || (el.tag & 0xffff) === 0) continue; // replaced; group lengths would be wrong
    parts.push(dataset.buffer.subarray(el.start, el.end));
  }
  flushBefore(0x100000000);
  let body = Buffer.concat(parts);
  if (dataset.deflated) {
    body = deflateRawSync(body);
    if (body.length % 2) body = Buffer.concat([body, Buffer.alloc(1)]);
  }
  return Buffer.concat([p.meta, body]);
}

/** A sequence written as UN (CP-246): its items in implicit VR little endian, of defined length. */
export function unSequence(tag: number, items: Element[][]): Element {
  const parts: Buffer[] = [];
  for (const item of items) {
    const body = encodeDataset(item, TS.ImplicitVRLittleEndian);
    const header = Buffer.alloc(8);
    header.writeUInt32LE(0xe000fffe, 0);
    header.writeUInt32LE(body.length, 4);
    parts.push(header, body);
  }
  return { tag, vr: 'UN', value: Buffer.concat(parts) };
}
