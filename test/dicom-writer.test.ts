import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { inflateRawSync } from 'node:zlib';
import { TS } from '../src/dicom/transfer-syntax.js';
import { DPHIANT_IMPLEMENTATION_CLASS_UID, isValidUid, newUid } from '../src/dicom/uid.js';
import { encodeDataset, encodeFileMeta, part10, tag, type Element, type Fragments } from '../src/dicom/writer.js';
import { writeLargeMultiframeFile } from '../tools/synth/large.js';
import { generateElements } from '../tools/synth/generate.js';
import { dcmdump, makeVariants } from './support/variants.js';

const exec = promisify(execFile);
const ELE = TS.ExplicitVRLittleEndian;
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** The data set bytes of a P10 file (after the meta group, whose length is at offset 140). */
function datasetOf(file: Buffer): Buffer {
  return file.subarray(144 + file.readUInt32LE(140));
}

function withDefinedLengths(els: Element[]): Element[] {
  return els.map((e) =>
    e.vr === 'SQ' ? { ...e, undefinedLength: false, value: (e.value as Element[][]).map(withDefinedLengths) } : e,
  );
}

/** Offset table and fragments of the (last) encapsulated PixelData of a file written by DCMTK. */
function fragmentsOf(file: Buffer): Fragments {
  let p = file.lastIndexOf(Buffer.from('e07f10004f420000ffffffff', 'hex')) + 12;
  const items: Buffer[] = [];
  for (;;) {
    const t = tag(file.readUInt16LE(p), file.readUInt16LE(p + 2));
    const len = file.readUInt32LE(p + 4);
    if (t === 0xfffee0dd) break;
    items.push(file.subarray(p + 8, p + 8 + len));
    p += 8 + len;
  }
  return { offsetTable: items[0], fragments: items.slice(1) };
}

describe('DICOM writer', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'dphiant-writer-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  describe('byte layout', () => {
    it('tag() packs group and element into one unsigned number', () => {
      expect(tag(0x7fe0, 0x0010)).to.equal(0x7fe00010);
      expect(tag(0xfffe, 0xe000)).to.equal(0xfffee000);
    });

    it('a short explicit VR element has an 8-byte header and OB, UT, UN, SQ and friends a 12-byte header', () => {
      expect(hex(encodeDataset([{ tag: 0x00280010, vr: 'US', value: 512 }], ELE))).to.equal('2800100055530200' + '0002');
      for (const vr of ['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']) {
        const value = ['UC', 'UR', 'UT'].includes(vr) ? 'abcdefgh' : new Uint8Array(8);
        const b = encodeDataset([{ tag: 0x00091001, vr, value }], ELE);
        expect(b.length, vr).to.equal(12 + 8);
        expect(b.subarray(4, 8).toString('latin1'), vr).to.equal(vr + '\0\0');
        expect(b.readUInt32LE(8), vr).to.equal(8);
      }
      expect(hex(encodeDataset([{ tag: 0x00081120, vr: 'SQ', value: [] }], ELE))).to.equal('0800201153510000' + '00000000');
    });

    it('implicit VR elements have an 8-byte header with a 32-bit length and no VR', () => {
      const b = encodeDataset([{ tag: 0x00100010, vr: 'PN', value: 'Doe^Jane' }], TS.ImplicitVRLittleEndian);
      expect(hex(b)).to.equal('1000100008000000' + Buffer.from('Doe^Jane').toString('hex'));
    });

    it('odd text values are padded with a space, UIDs and binary values with NUL', () => {
      const b = encodeDataset(
        [
          { tag: 0x00100020, vr: 'LO', value: 'ABC' },
          { tag: 0x00080018, vr: 'UI', value: '1.2.3' },
          { tag: 0x00091002, vr: 'UN', value: Uint8Array.of(1, 2, 3) },
        ],
        ELE,
      );
      expect(hex(b.subarray(0, 14))).to.equal('0800180055490600' + Buffer.from('1.2.3\0').toString('hex'));
      expect(hex(b.subarray(14, 30))).to.equal('09000210554e0000' + '04000000' + '01020300');
      expect(hex(b.subarray(30))).to.equal('100020004c4f0400' + Buffer.from('ABC ').toString('hex'));
    });

    it('multiple text values are joined with backslashes and DS numbers never exceed 16 characters', () => {
      const b = encodeDataset(
        [
          { tag: 0x00080008, vr: 'CS', value: ['ORIGINAL', 'PRIMARY'] },
          { tag: 0x00200037, vr: 'DS', value: [1, 0, 0, 0, 0.1 + 0.2, -1 / 3] },
        ],
        ELE,
      );
      expect(b.subarray(8, 24).toString('latin1')).to.equal('ORIGINAL\\PRIMARY');
      const ds = b.subarray(32, 32 + b.readUInt16LE(30)).toString('latin1').trimEnd().split('\\');
      expect(ds.slice(0, 4)).to.deep.equal(['1', '0', '0', '0']);
      for (const v of ds) expect(v.length).to.be.at.most(16);
      expect(Number(ds[4])).to.be.closeTo(0.3, 1e-12);
      expect(Number(ds[5])).to.be.closeTo(-1 / 3, 1e-12);
      expect(() => encodeDataset([{ tag: 0x00200013, vr: 'IS', value: 1.5 }], ELE)).to.throw(/IS/);
    });

    it('big endian writes tags, lengths, numbers and OW words most significant byte first, OB bytes as they are', () => {
      const be = TS.ExplicitVRBigEndian;
      const one = (el: Element): string => hex(encodeDataset([el], be));
      expect(one({ tag: 0x00280010, vr: 'US', value: 0x0102 })).to.equal('0028001055530002' + '0102');
      expect(one({ tag: 0x00181310, vr: 'US', value: [1, 2, 3, 4] })).to.equal('0018131055530008' + '0001000200030004');
      expect(one({ tag: 0x00091003, vr: 'UL', value: 0x01020304 })).to.equal('00091003554c0004' + '01020304');
      expect(one({ tag: 0x00091004, vr: 'SS', value: -2 })).to.equal('0009100453530002' + 'fffe');
      expect(one({ tag: 0x00091005, vr: 'FL', value: 1 })).to.equal('00091005464c0004' + '3f800000');
      expect(one({ tag: 0x00091006, vr: 'FD', value: -2 })).to.equal('0009100646440008' + 'c000000000000000');
      expect(one({ tag: 0x00280009, vr: 'AT', value: 0x00181063 })).to.equal('0028000941540004' + '00181063');
      expect(one({ tag: 0x00091007, vr: 'SV', value: [-1n] })).to.equal('0009100753560000' + '00000008' + 'ffffffffffffffff');
      expect(one({ tag: 0x7fe00010, vr: 'OW', value: Uint8Array.of(0x01, 0x02, 0x03, 0x04) })).to.equal('7fe000104f570000' + '00000004' + '02010403');
      expect(one({ tag: 0x7fe00010, vr: 'OB', value: Uint8Array.of(0x01, 0x02, 0x03, 0x04) })).to.equal('7fe000104f420000' + '00000004' + '01020304');
      // the same OW little endian is written as given
      expect(hex(encodeDataset([{ tag: 0x7fe00010, vr: 'OW', value: Uint8Array.of(1, 2, 3, 4) }], ELE))).to.equal('e07f10004f570000' + '04000000' + '01020304');
    });

    it('elements are sorted by tag within the data set and within items, groups above 0x7FFF included', () => {
      const b = encodeDataset(
        [
          { tag: 0x7fe00010, vr: 'OB', value: new Uint8Array(2) },
          { tag: 0x00400275, vr: 'SQ', value: [[{ tag: 0x00401001, vr: 'SH', value: 'RP' }, { tag: 0x00080050, vr: 'SH', value: 'AC' }]] },
          { tag: 0x00100010, vr: 'PN', value: 'A^B' },
        ],
        ELE,
      );
      const order = [0, 12].map((o) => b.readUInt16LE(o).toString(16));
      expect(order).to.deep.equal(['10', '40']);
      // inside the item: (0008,0050) before (0040,1001)
      expect(b.readUInt16LE(12 + 12 + 8)).to.equal(0x0008);
      expect(b.readUInt16LE(b.length - 14)).to.equal(0x7fe0);
    });

    it('a sequence with undefined length ends each item and itself with delimiters', () => {
      const b = encodeDataset([{ tag: 0x00091010, vr: 'SQ', undefinedLength: true, value: [[{ tag: 0x00091013, vr: 'LO', value: 'ID' }]] }], ELE);
      expect(hex(b)).to.equal(
        '09001010' + '5351' + '0000' + 'ffffffff' + // SQ, undefined length
          'feff00e0' + 'ffffffff' + // item, undefined length
          '09001310' + '4c4f' + '0200' + '4944' +
          'feff0de0' + '00000000' + // item delimiter
          'feffdde0' + '00000000', // sequence delimiter
      );
    });

    it('a sequence with defined length carries the exact byte lengths of its nested items', () => {
      const b = encodeDataset(
        [{ tag: 0x00400275, vr: 'SQ', value: [[{ tag: 0x00081110, vr: 'SQ', value: [[{ tag: 0x00081155, vr: 'UI', value: '1.2' }]] }], []] }],
        ELE,
      );
      // innermost element 8+4 = 12; inner item 8+12 = 20; inner SQ 12+20 = 32; outer items: 8+32 and 8+0
      expect(b.readUInt32LE(8)).to.equal(8 + 32 + 8);
      expect(b.readUInt32LE(16)).to.equal(32);
      expect(b.readUInt32LE(20 + 8)).to.equal(20);
      expect(b.readUInt32LE(36)).to.equal(12);
      expect(b.length).to.equal(12 + 48);
      expect(hex(b.subarray(b.length - 8))).to.equal('feff00e000000000');
    });

    it('encapsulated pixel data has an offset table item, even fragments and a sequence delimiter', () => {
      const b = encodeDataset(
        [{ tag: 0x7fe00010, vr: 'OB', value: { offsetTable: Uint8Array.of(0, 0, 0, 0), fragments: [Uint8Array.of(0xff, 0xd8, 0xff), Uint8Array.of(1, 2)] } }],
        TS.JPEGBaseline,
      );
      expect(hex(b)).to.equal(
        'e07f1000' + '4f42' + '0000' + 'ffffffff' +
          'feff00e0' + '04000000' + '00000000' +
          'feff00e0' + '04000000' + 'ffd8ff00' +
          'feff00e0' + '02000000' + '0102' +
          'feffdde0' + '00000000',
      );
      const noTable = encodeDataset([{ tag: 0x7fe00010, vr: 'OB', value: { fragments: [Uint8Array.of(1, 2)] } }], TS.RLELossless);
      expect(hex(noTable.subarray(12, 20))).to.equal('feff00e000000000');
    });

    it('the deflated syntax is the raw deflate of the explicit little endian data set, padded to even length', () => {
      for (const n of [1, 2, 3, 50, 51, 400]) {
        const els: Element[] = [{ tag: 0x00104000, vr: 'LT', value: 'x'.repeat(n) + String(n * 7919) }];
        const deflated = encodeDataset(els, TS.DeflatedExplicitVRLittleEndian);
        expect(deflated.length % 2).to.equal(0);
        expect(hex(inflateRawSync(deflated))).to.equal(hex(encodeDataset(els, ELE)));
      }
    });

    it('strings of charset-dependent VRs are latin1 by default and UTF-8 on request, UIDs and codes always ASCII', () => {
      const els: Element[] = [{ tag: 0x00100010, vr: 'PN', value: 'Müller^Zoë' }, { tag: 0x00080018, vr: 'UI', value: '1.2' }];
      const latin1 = encodeDataset(els, ELE);
      const utf8 = encodeDataset(els, ELE, { charset: 'utf8' });
      expect(hex(latin1.subarray(12 + 8))).to.equal(Buffer.from('Müller^Zoë', 'latin1').toString('hex')); // 10 bytes
      expect(hex(utf8.subarray(12 + 8))).to.equal(Buffer.from('Müller^Zoë', 'utf8').toString('hex')); // 12 bytes
      expect(hex(utf8.subarray(0, 12))).to.equal(hex(latin1.subarray(0, 12)));
    });

    it('the file meta group has a 128-byte zero preamble, DICM and a group length that covers exactly the group', () => {
      const meta = encodeFileMeta({ sopClassUid: '1.2.840.10008.5.1.4.1.1.2', sopInstanceUid: '2.25.1', tsUid: TS.ExplicitVRBigEndian, sourceAet: 'SYNTH' });
      expect(meta.subarray(0, 128).every((x) => x === 0)).to.equal(true);
      expect(meta.subarray(128, 132).toString('latin1')).to.equal('DICM');
      expect(hex(meta.subarray(132, 140))).to.equal('02000000554c0400');
      expect(144 + meta.readUInt32LE(140)).to.equal(meta.length);
      const text = meta.toString('latin1');
      expect(text).to.contain('1.2.840.10008.1.2.2\0');
      expect(text).to.contain(DPHIANT_IMPLEMENTATION_CLASS_UID);
      expect(text).to.contain('SYNTH ');
    });

    it('refuses duplicate tags, meta elements in the data set, native pixel data in an encapsulated syntax and oversized short values', () => {
      const pn: Element = { tag: 0x00100010, vr: 'PN', value: 'A' };
      expect(() => encodeDataset([pn, pn], ELE)).to.throw(/duplicate/);
      expect(() => encodeDataset([{ tag: 0x00020010, vr: 'UI', value: ELE }], ELE)).to.throw(/meta/);
      expect(() => encodeDataset([{ tag: 0x7fe00010, vr: 'OB', value: new Uint8Array(2) }], TS.JPEGBaseline)).to.throw(/Fragments/);
      expect(() => encodeDataset([{ tag: 0x7fe00010, vr: 'OB', value: { fragments: [] } }], ELE)).to.throw(/encapsulated/);
      expect(() => encodeDataset([{ tag: 0x00091001, vr: 'LO', value: 'x'.repeat(70000) }], ELE)).to.throw(/16-bit/);
      expect(() => encodeDataset([{ tag: 0x00091001, vr: 'XX', value: 'x' }], ELE)).to.throw(/unsupported VR/);
      expect(() => part10([pn], ELE)).to.throw(/SOPClassUID/);
    });

    it('newUid makes distinct valid 2.25 UIDs of at most 64 characters', () => {
      const uids = new Set(Array.from({ length: 1000 }, newUid));
      expect(uids.size).to.equal(1000);
      for (const u of uids) {
        expect(u.startsWith('2.25.')).to.equal(true);
        expect(isValidUid(u), u).to.equal(true);
      }
    });
  });

  describe('DCMTK reads what it writes', () => {
    const syntaxes: [string, string][] = [
      ['implicit VR little endian', TS.ImplicitVRLittleEndian],
      ['explicit VR little endian', TS.ExplicitVRLittleEndian],
      ['explicit VR big endian', TS.ExplicitVRBigEndian],
      ['deflated explicit VR little endian', TS.DeflatedExplicitVRLittleEndian],
      ['RLE lossless', TS.RLELossless],
    ];
    for (const [name, ts] of syntaxes) {
      it(`dcmdump reads a ${name} file without complaint and sees the names, the depth-3 sequence, the private block and the pixel data`, async () => {
        const file = path.join(dir, `read-${ts}.dcm`);
        const elements = generateElements({ tsUid: ts, rows: 64, cols: 64, seed: 5 });
        writeFileSync(file, part10(elements, ts));
        const r = await dcmdump(file, ['-Un', '+L']);
        expect(r.code, r.stderr).to.equal(0);
        // implicit VR: DCMTK reads our undefined-length private sequences as CP-246 UN sequences and says so
        const complaints = r.stderr.split('\n').filter((l) => l && !/CP-246/.test(l));
        expect(complaints, r.stderr).to.deep.equal([]);
        const name = elements.find((e) => e.tag === 0x00100010)!.value as string;
        const id = elements.find((e) => e.tag === 0x00100020)!.value as string;
        expect(r.stdout).to.contain(`(0002,0010) UI [${ts}]`);
        expect(r.stdout).to.contain(`(0010,0010) PN [${name}]`);
        expect(r.stdout).to.contain('(0009,0010) LO [DPHIANT SYNTH]');
        // depth 3: three levels of item indentation (2 spaces per level, items and their content)
        expect(r.stdout).to.match(new RegExp(`\\n {12}\\(0010,0010\\) PN \\[${name.replace(/[\^']/g, '.')}\\]`));
        expect(r.stdout).to.match(new RegExp(`\\n {12}\\(0010,0020\\) LO \\[${id}\\]`));
        if (ts === TS.RLELossless) expect(r.stdout).to.match(/\(7fe0,0010\) OB \(PixelSequence #=2\)/);
        else expect(r.stdout).to.match(/\(7fe0,0010\) O[BW] .*# +8192, 1 PixelData/);
      });
    }

    it('DCMTK converting our big endian, deflated and implicit files to explicit little endian gives exactly our explicit little endian bytes', async () => {
      const elements = withDefinedLengths(generateElements({ rows: 32, cols: 32, seed: 9 }));
      const reference = part10(elements, ELE);
      for (const ts of [TS.ExplicitVRBigEndian, TS.DeflatedExplicitVRLittleEndian, TS.ExplicitVRLittleEndian]) {
        const src = path.join(dir, `conv-${ts}.dcm`);
        const dst = path.join(dir, `conv-${ts}-le.dcm`);
        writeFileSync(src, part10(elements, ts));
        await exec('dcmconv', ['+te', src, dst]);
        expect(datasetOf(readFileSync(dst)).equals(datasetOf(reference)), ts).to.equal(true);
      }
      // and back: DCMTK writing big endian from our little endian gives our big endian
      const be = path.join(dir, 'conv-to-be.dcm');
      writeFileSync(path.join(dir, 'ref-le.dcm'), reference);
      await exec('dcmconv', ['+tb', path.join(dir, 'ref-le.dcm'), be]);
      expect(datasetOf(readFileSync(be)).equals(datasetOf(part10(elements, TS.ExplicitVRBigEndian)))).to.equal(true);
      // implicit: without private tags (DCMTK does not know their VRs) the bytes match too
      const publicOnly = elements.filter((e) => e.tag >>> 16 !== 0x0009);
      const imp = path.join(dir, 'conv-implicit.dcm');
      writeFileSync(imp, part10(publicOnly, TS.ImplicitVRLittleEndian));
      await exec('dcmconv', ['+te', imp, imp + '.le']);
      expect(datasetOf(readFileSync(imp + '.le')).equals(datasetOf(part10(publicOnly, ELE)))).to.equal(true);
    });

    it('an RLE file of ours decodes with dcmdrle to exactly the native pixels', async () => {
      for (const bits of [8, 16] as const) {
        const o = { rows: 100, cols: 77, bitsAllocated: bits, seed: 3, instanceIndex: 4 };
        const rle = path.join(dir, `rle-${bits}.dcm`);
        writeFileSync(rle, part10(generateElements({ ...o, tsUid: TS.RLELossless }), TS.RLELossless));
        await exec('dcmdrle', [rle, rle + '.raw.dcm']);
        const native = generateElements(o).find((e) => e.tag === 0x7fe00010)!.value as Uint8Array;
        const decoded = readFileSync(rle + '.raw.dcm');
        const pixelBytes = native.length + (native.length % 2);
        expect(hex(decoded.subarray(decoded.length - pixelBytes, decoded.length - pixelBytes + native.length))).to.equal(hex(native));
      }
    });

    it('JPEG fragments made by DCMTK and wrapped by our writer decode with dcmdjpeg to the same pixels', async () => {
      const variants = await makeVariants(path.join(dir, 'variants'));
      const dcmtkFile = variants[TS.JPEGBaseline]!;
      const ours = generateElements({ bitsAllocated: 8, rows: 128, cols: 128, prefix: 'VAR' })
        .filter((e) => e.tag !== 0x7fe00010)
        .concat({ tag: 0x7fe00010, vr: 'OB', value: fragmentsOf(readFileSync(dcmtkFile)) });
      // dcmcjpeg adds lossy-compression attributes; they do not matter for decoding
      const oursFile = path.join(dir, 'ours-jpeg.dcm');
      writeFileSync(oursFile, part10(ours, TS.JPEGBaseline));
      await exec('dcmdjpeg', [oursFile, oursFile + '.raw.dcm']);
      await exec('dcmdjpeg', [dcmtkFile, dcmtkFile + '.raw.dcm']);
      const a = readFileSync(oursFile + '.raw.dcm');
      const b = readFileSync(dcmtkFile + '.raw.dcm');
      expect(hex(a.subarray(a.length - 128 * 128))).to.equal(hex(b.subarray(b.length - 128 * 128)));
    });
  });

  describe('large files', () => {
    it('a 50 MB multi-frame file is streamed with bounded memory and has exactly the declared pixel data length', async () => {
      const file = path.join(dir, 'large.dcm');
      const rows = 512, cols = 512, frames = 100;
      const header = generateElements({ rows: 8, cols: 8 }).filter((e) => e.tag !== 0x7fe00010);
      global.gc?.();
      const base = process.memoryUsage();
      let peakRss = base.rss, peakBuffers = base.arrayBuffers;
      const sampler = setInterval(() => {
        const m = process.memoryUsage();
        peakRss = Math.max(peakRss, m.rss);
        peakBuffers = Math.max(peakBuffers, m.arrayBuffers);
      }, 5);
      let size: number;
      try {
        size = await writeLargeMultiframeFile(file, { rows, cols, frames, bitsAllocated: 16, elements: header });
      } finally {
        clearInterval(sampler);
      }
      const pixelBytes = rows * cols * 2 * frames;
      expect(statSync(file).size).to.equal(size);
      expect(peakBuffers - base.arrayBuffers, 'Buffer memory growth').to.be.below(8 * 1024 * 1024);
      expect(peakRss - base.rss, 'RSS growth').to.be.below(24 * 1024 * 1024);

      // the PixelData header sits exactly pixelBytes + 12 bytes before the end
      const fd = readFileSync(file).subarray(size - pixelBytes - 12, size - pixelBytes);
      expect(hex(fd)).to.equal('e07f10004f570000' + Buffer.from(Uint32Array.of(pixelBytes).buffer).toString('hex'));
      const r = await dcmdump(file, ['-M', '-Un']);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stderr).to.equal('');
      expect(r.stdout).to.contain('(0028,0008) IS [100]');
      expect(r.stdout).to.match(/\(0028,0010\) US 512 /);
      expect(r.stdout).to.match(new RegExp(`\\(7fe0,0010\\) OW .*# ${pixelBytes}, 1 PixelData`));
    });

    it('large files can be written in big endian and implicit VR, with odd 8-bit pixel data padded', async () => {
      const header = generateElements({ rows: 8, cols: 8 }).filter((e) => e.tag !== 0x7fe00010);
      for (const ts of [TS.ExplicitVRBigEndian, TS.ImplicitVRLittleEndian]) {
        const file = path.join(dir, `large-${ts}.dcm`);
        const size = await writeLargeMultiframeFile(file, { rows: 3, cols: 5, frames: 3, bitsAllocated: 8, elements: header, tsUid: ts });
        expect(statSync(file).size).to.equal(size);
        const r = await dcmdump(file, ['-Un']);
        expect(r.code, r.stderr).to.equal(0);
        expect(r.stdout).to.contain(`(0002,0010) UI [${ts}]`);
        expect(r.stdout).to.match(/\(7fe0,0010\) O[BW] .*# +46, 1 PixelData/);
      }
      let error: Error | undefined;
      await writeLargeMultiframeFile(path.join(dir, 'x.dcm'), { rows: 1, cols: 1, frames: 1, bitsAllocated: 8, elements: header, tsUid: TS.RLELossless }).catch((e: Error) => (error = e));
      expect(error?.message).to.match(/native/);
    });
  });
});
