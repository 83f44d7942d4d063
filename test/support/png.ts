// A PNG decoder just large enough for the browser's screenshots (8-bit greyscale, RGB, RGBA, non-interlaced), so a
// test can look at what a page really rendered instead of at the file's size.
import { inflateSync } from 'node:zlib';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 4: 2, 6: 4 };

export interface DecodedPng {
  width: number;
  height: number;
  channels: number;
  /** Unfiltered samples, row after row. */
  pixels: Buffer;
}

export function decodePng(file: Buffer): DecodedPng {
  if (!file.subarray(0, 8).equals(SIGNATURE)) throw new Error('not a PNG (signature)');
  let offset = 8;
  let header: { width: number; height: number; bitDepth: number; colourType: number; interlace: number } | undefined;
  const idat: Buffer[] = [];
  while (offset + 8 <= file.length) {
    const length = file.readUInt32BE(offset);
    const type = file.toString('latin1', offset + 4, offset + 8);
    const data = file.subarray(offset + 8, offset + 8 + length);
    if (type === 'IHDR') header = { width: data.readUInt32BE(0), height: data.readUInt32BE(4), bitDepth: data[8]!, colourType: data[9]!, interlace: data[12]! };
    else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') break;
    offset += 12 + length; // length, type, data, CRC
  }
  if (!header) throw new Error('PNG without IHDR');
  const channels = CHANNELS[header.colourType];
  if (header.bitDepth !== 8 || !channels || header.interlace !== 0) throw new Error(`unsupported PNG: depth ${header.bitDepth}, colour type ${header.colourType}, interlace ${header.interlace}`);
  const raw = inflateSync(Buffer.concat(idat));
  const stride = header.width * channels;
  if (raw.length !== header.height * (stride + 1)) throw new Error(`PNG data is ${raw.length} bytes, expected ${header.height * (stride + 1)}`);
  const pixels = Buffer.alloc(header.height * stride);
  for (let y = 0; y < header.height; y++) {
    const filter = raw[y * (stride + 1)]!;
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const out = y * stride;
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? pixels[out + i - channels]! : 0; // left
      const b = y > 0 ? pixels[out - stride + i]! : 0; // up
      const c = y > 0 && i >= channels ? pixels[out - stride + i - channels]! : 0; // up-left
      let v = line[i]!;
      if (filter === 1) v += a;
      else if (filter === 2) v += b;
      else if (filter === 3) v += (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c;
        const pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
        v += pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      } else if (filter !== 0) throw new Error(`PNG filter ${filter} on row ${y}`);
      pixels[out + i] = v & 0xff;
    }
  }
  return { width: header.width, height: header.height, channels, pixels };
}

/**
 * What a rectangle of the image holds: how many distinct colours, and the share of its pixels that differ from its
 * most common colour (the background). A blank or single-colour area has 1 colour and a share of 0.
 */
export function regionStats(png: DecodedPng, box: { x: number; y: number; width: number; height: number }): { colours: number; inked: number } {
  const x0 = Math.max(0, Math.floor(box.x)), y0 = Math.max(0, Math.floor(box.y));
  const x1 = Math.min(png.width, Math.ceil(box.x + box.width)), y1 = Math.min(png.height, Math.ceil(box.y + box.height));
  const counts = new Map<string, number>();
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      const at = (y * png.width + x) * png.channels;
      const key = png.pixels.subarray(at, at + png.channels).toString('hex');
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
  }
  const total = Math.max(1, (x1 - x0) * (y1 - y0));
  const background = Math.max(0, ...counts.values());
  return { colours: counts.size, inked: (total - background) / total };
}
