// A native multi-frame file of any size, streamed to disk frame by frame (the large-instance tests and `synth
// --large-bytes`): the header through the product's encoder, then the frames, so memory stays at about one frame.
import { open } from 'node:fs/promises';
import { encodingOf } from '../../src/dicom/transfer-syntax.js';
import { Tags, encodeHeader, part10, type Element, type Part10Options } from '../../src/dicom/writer.js';

export interface LargeFileOptions extends Part10Options {
  rows: number;
  cols: number;
  frames: number;
  bitsAllocated: 8 | 16;
  /** Header elements (SOP class/instance required). Rows, Columns, NumberOfFrames and BitsAllocated are set here. */
  elements: Element[];
  /** A native syntax: explicit LE (default), implicit LE or explicit BE. */
  tsUid?: string;
  /** Bytes of frame `index`, little-endian words; default a cheap moving pattern. Called once per frame. */
  frame?: (index: number) => Uint8Array;
}

/** Default frames: one pattern tile of 2×rows rows, each frame a window into it shifted by the frame index. */
function patternFrames(rows: number, cols: number, bytesPerPixel: 1 | 2): (index: number) => Uint8Array {
  const tile = Buffer.alloc(2 * rows * cols * bytesPerPixel);
  for (let y = 0; y < 2 * rows; y++) {
    for (let x = 0; x < cols; x++) {
      const v = ((x * 3) ^ (y * 5)) + ((x + y) >> 2);
      if (bytesPerPixel === 2) tile.writeUInt16LE(v & 0x0fff, (y * cols + x) * 2);
      else tile[y * cols + x] = v & 0xff;
    }
  }
  const frameBytes = rows * cols * bytesPerPixel;
  return (i) => tile.subarray(((i * 7) % rows) * cols * bytesPerPixel, ((i * 7) % rows) * cols * bytesPerPixel + frameBytes);
}

/**
 * Streams a native multi-frame file of any size to disk: header, PixelData header with the full length, then the
 * frames one by one (each write awaited, so memory stays at about one frame). Returns the file size in bytes.
 */
export async function writeLargeMultiframeFile(path: string, opts: LargeFileOptions): Promise<number> {
  const tsUid = opts.tsUid ?? '1.2.840.10008.1.2.1';
  const enc = encodingOf(tsUid);
  if (enc.deflated || enc.encapsulated) throw new Error(`writeLargeMultiframeFile writes native syntaxes only, not ${tsUid}`);
  const bytesPerPixel = opts.bitsAllocated === 16 ? 2 : 1;
  const frameBytes = opts.rows * opts.cols * bytesPerPixel;
  const pixelBytes = frameBytes * opts.frames;
  const padded = pixelBytes + (pixelBytes % 2);
  if (padded > 0xfffffffe) throw new Error(`pixel data of ${pixelBytes} bytes exceeds the 32-bit length limit`);

  const fixed: Element[] = [
    { tag: 0x00280008, vr: 'IS', value: opts.frames },
    { tag: 0x00280010, vr: 'US', value: opts.rows },
    { tag: 0x00280011, vr: 'US', value: opts.cols },
    { tag: 0x00280100, vr: 'US', value: opts.bitsAllocated },
  ];
  const defaults: Element[] = [
    { tag: 0x00280002, vr: 'US', value: 1 },
    { tag: 0x00280004, vr: 'CS', value: 'MONOCHROME2' },
    { tag: 0x00280101, vr: 'US', value: opts.bitsAllocated === 16 ? 12 : 8 },
    { tag: 0x00280102, vr: 'US', value: opts.bitsAllocated === 16 ? 11 : 7 },
    { tag: 0x00280103, vr: 'US', value: 0 },
  ];
  const given = opts.elements.filter((e) => e.tag >>> 0 !== Tags.PixelData && !fixed.some((f) => f.tag === e.tag >>> 0));
  const header = [...given, ...fixed, ...defaults.filter((d) => !given.some((e) => e.tag >>> 0 === d.tag))];
  const head = Buffer.concat([part10(header, tsUid, opts), encodeHeader(Tags.PixelData, bytesPerPixel === 2 ? 'OW' : 'OB', padded, enc)]);

  const frameOf = opts.frame ?? patternFrames(opts.rows, opts.cols, bytesPerPixel);
  const fh = await open(path, 'w');
  try {
    await fh.write(head);
    for (let i = 0; i < opts.frames; i++) {
      let f = frameOf(i);
      if (f.length !== frameBytes) throw new Error(`frame ${i} has ${f.length} bytes, expected ${frameBytes}`);
      if (!enc.littleEndian && bytesPerPixel === 2) f = Buffer.from(f).swap16(); // a copy: never the caller's bytes
      await fh.write(f);
    }
    if (padded !== pixelBytes) await fh.write(new Uint8Array(1));
  } finally {
    await fh.close();
  }
  return head.length + padded;
}
