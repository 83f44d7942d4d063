// Small hand-built instances for engine tests: an image pixel module of 4×4 16-bit pixels, and the merge of a base
// element list with a case's own elements (a case's element replaces the base one of the same tag).
import type { Element } from '../../src/dicom/writer.js';

/** Image Pixel module of a 4×4 MONOCHROME2 image, 12 bits stored, with its Pixel Data. */
export const SMALL_PIXEL_MODULE: readonly Element[] = [
  { tag: 0x00280002, vr: 'US', value: 1 },
  { tag: 0x00280004, vr: 'CS', value: 'MONOCHROME2' },
  { tag: 0x00280010, vr: 'US', value: 4 },
  { tag: 0x00280011, vr: 'US', value: 4 },
  { tag: 0x00280100, vr: 'US', value: 16 },
  { tag: 0x00280101, vr: 'US', value: 12 },
  { tag: 0x00280102, vr: 'US', value: 11 },
  { tag: 0x00280103, vr: 'US', value: 0 },
  { tag: 0x7fe00010, vr: 'OW', value: Buffer.alloc(4 * 4 * 2, 0x11) },
];

/** `base` with `extra` merged in: an extra element replaces the base element of its tag. */
export function withElements(base: readonly Element[], extra: readonly Element[]): Element[] {
  const tags = new Set(extra.map((e) => e.tag));
  return [...base.filter((e) => !tags.has(e.tag)), ...extra];
}
