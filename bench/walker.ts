// The byte-preserving walker's parse speed, measured in one run (not asserted): one 512×512 16-bit CT, parsed over
// and over, against two anchors timed on the same bytes in the same run: a plain copy of the file (Buffer.from, the
// floor of touching every byte once) and dcmjs's DicomMessage.readFile (a full DICOM parser in JavaScript).
import { createRequire } from 'node:module';
import { splitPart10 } from '../src/dicom/part10.js';
import { TS } from '../src/dicom/transfer-syntax.js';
import { parseDataset, parseFile, walk } from '../src/dicom/walker.js';
import { generateOne } from '../tools/synth/generate.js';

const dcmjs = createRequire(import.meta.url)('dcmjs') as { data: { DicomMessage: { readFile(buffer: ArrayBuffer): unknown } } };

/** Microseconds per call of `fn`, after a warm-up (the JIT), over enough calls to last about `ms`. */
function timePerCall(fn: () => unknown, ms = 1500): number {
  for (let i = 0; i < 200; i++) fn();
  let n = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < ms * 1e6) {
    for (let i = 0; i < 100; i++) fn();
    n += 100;
    elapsed = Number(process.hrtime.bigint() - start);
  }
  return elapsed / 1e3 / n;
}

export function benchWalker(): string[] {
  const file = generateOne({ tsUid: TS.ExplicitVRLittleEndian });
  const part = splitPart10(file);
  const implicit = splitPart10(generateOne({ tsUid: TS.ImplicitVRLittleEndian }));
  let elements = 0;
  walk(parseDataset(part.dataset, part.transferSyntaxUid), () => void elements++);
  // dcmjs wants an ArrayBuffer of exactly the file
  const arrayBuffer = new Uint8Array(file).buffer;

  const copy = timePerCall(() => Buffer.from(file));
  const dataset = timePerCall(() => parseDataset(part.dataset, part.transferSyntaxUid));
  const whole = timePerCall(() => parseFile(file));
  const implicitVr = timePerCall(() => parseDataset(implicit.dataset, implicit.transferSyntaxUid));
  const dcmjsRead = timePerCall(() => dcmjs.data.DicomMessage.readFile(arrayBuffer), 3000);

  const row = (label: string, us: number) =>
    `  ${label.padEnd(38)} ${us.toFixed(1).padStart(8)} µs  (${Math.round(1e6 / us)}/s; ${(us / copy).toFixed(2)} × the copy, ${(us / dcmjsRead).toFixed(3)} × dcmjs)`;
  return [
    `walker, one 512×512 16-bit CT (${file.length} bytes, ${elements} elements), one core:`,
    row('Buffer.from copy of the file (anchor)', copy),
    row('dcmjs DicomMessage.readFile (anchor)', dcmjsRead),
    row('parseDataset, explicit VR LE', dataset),
    row('parseFile (with the file meta)', whole),
    row('parseDataset, implicit VR LE', implicitVr),
  ];
}
