// Burned-in text, measured in one run (not asserted anywhere):
//  1. OCR per at-risk image on one core (tesseract limited to one thread), and the whole cleaning step
//     (decode, OCR, blank, re-encode) per image, in memory;
//  2. the pipeline on a mix of 90% CT and 10% at-risk ultrasound, until every job is DONE, with the gate on and
//     with it off, same instances, same machine, one after the other.
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { deidentify } from '../src/anonymize/deidentify.js';
import { initCodecs } from '../src/anonymize/pixels/codecs.js';
import { decodeFrames, toGrey } from '../src/anonymize/pixels/frames.js';
import { findText } from '../src/anonymize/pixels/ocr.js';
import { Profile } from '../src/anonymize/profile.js';
import { parseFile } from '../src/dicom/walker.js';
import { generateStudies } from '../tools/synth/generate.js';
import { burnedInFile } from '../tools/synth/burned-in.js';
import { storescu } from '../test/support/dcmtk.js';
import { waitUntilSettled } from '../test/support/pipeline.js';
import { KeyedStandIn } from '../test/support/standin.js';
import { startStack } from '../test/support/stack.js';

const since = (t: bigint) => Number(process.hrtime.bigint() - t) / 1e9;

async function usImages(n: number, encodings: readonly ('native' | 'rle')[] = ['native', 'rle']): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const made = await burnedInFile({ kind: 'US', frames: 1, encoding: encodings[i % encodings.length]!, patient: { name: `BENCH^PATIENT${String.fromCharCode(65 + (i % 26))}`, id: `MRN${1000000 + i}`, birthDate: '19700101' }, allowWords: ['5.0 MHZ', '12 CM'], seed: 500 + i });
    out.push(made.file);
  }
  return out;
}

export async function benchBurnedIn(opts: { images: number; instances: number }): Promise<string[]> {
  await initCodecs();
  const images = await usImages(opts.images);
  // 1. OCR alone, then the whole de-identification with cleaning, per image
  const decoded = images.map((f) => decodeFrames(parseFile(f).dataset));
  await findText([toGrey(decoded[0]!, 0)]); // warm-up: the first run loads the model from disk
  let t = process.hrtime.bigint();
  for (const d of decoded) await findText([toGrey(d, 0)]);
  const ocrMs = (since(t) * 1000) / images.length;
  const key = Buffer.alloc(32, 9);
  const profile = new Profile();
  const aliases = new KeyedStandIn(key);
  t = process.hrtime.bigint();
  for (const f of images) {
    const d = await deidentify(f, profile, key, aliases);
    if (d.pixels.kind !== 'cleaned') throw new Error(`bench image not cleaned: ${d.pixels.kind}`);
  }
  const cleanMs = (since(t) * 1000) / images.length;
  const lines = [
    `burned-in text, ${images.length} ultrasound images 640×480 with a name, an ID and a date drawn in (native and RLE):`,
    `  OCR (tesseract, 1 thread) per image      ${ocrMs.toFixed(0)} ms`,
    `  de-identify with cleaning per image      ${cleanMs.toFixed(0)} ms  (decode, OCR, blank, re-encode, engine, gate)`,
  ];

  // 2. the pipeline with 10% at-risk images, gate on and off
  const rates: Record<string, number> = {};
  for (const gate of ['on', 'off'] as const) {
    const stack = await startStack({ env: { DPHIANT_ANONYMIZE_PIXELS_GATE: gate } });
    try {
      const dir = path.join(stack.work, 'mix');
      const risky = Math.round(opts.instances / 10);
      const m = await generateStudies({ outDir: dir, patients: 5, studiesPerPatient: 2, seriesPerStudy: 1, instancesPerSeries: Math.ceil((opts.instances - risky) / 10), rows: 512, cols: 512, seed: 3100, modalities: ['CT'] });
      const files = m.instances.slice(0, opts.instances - risky).map((i) => i.path);
      const us = await usImages(risky, ['native']); // one storescu proposes the CT's syntax for all
      us.forEach((b, i) => {
        const f = path.join(dir, `us-${i}.dcm`);
        writeFileSync(f, b);
        files.splice(Math.floor(((i + 1) * files.length) / (risky + 1)), 0, f); // spread through the burst
      });
      t = process.hrtime.bigint();
      const r = await storescu(files, { port: stack.mm.port, timeoutMs: 1_800_000 });
      if (r.code !== 0) throw new Error(`storescu failed: ${r.stderr.slice(-300)}`);
      await waitUntilSettled(stack.mm.journal, 1_800_000);
      const sec = since(t);
      const c = stack.mm.journal.counts();
      if (c.DONE !== files.length) throw new Error(`gate ${gate}: ${c.DONE} of ${files.length} DONE (${JSON.stringify(c)})`);
      rates[gate] = files.length / sec;
      lines.push(`  pipeline, ${files.length} instances (${risky} at risk), gate ${gate.padEnd(3)}  ${rates[gate]!.toFixed(1).padStart(6)} inst/s until all DONE (${sec.toFixed(1)} s)`);
    } finally {
      await stack.stop();
      rmSync(stack.work, { recursive: true, force: true });
    }
  }
  lines.push(`  ratio gate on / gate off                 ${(rates.on! / rates.off!).toFixed(2).padStart(6)}`);
  return lines;
}
