// Copies of a P10 file in every transfer syntax the SCP must accept, made with DCMTK (JPEG 2000 excepted:
// DCMTK cannot write it; a real J2K file is in ../shared/data/dicom when present).
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { TS } from '../../src/dicom/transfer-syntax.js';
import { generateOne } from '../../tools/synth/generate.js';

const run = promisify(execFile);

/** Output file name → DCMTK command line (input and output appended) and the TS the output must declare. */
const RECIPES: Record<string, { ts: string; cmd: string[]; eightBit?: boolean }> = {
  ImplicitVRLittleEndian: { ts: TS.ImplicitVRLittleEndian, cmd: ['dcmconv', '+ti'] },
  ExplicitVRLittleEndian: { ts: TS.ExplicitVRLittleEndian, cmd: ['dcmconv', '+te'] },
  ExplicitVRBigEndian: { ts: TS.ExplicitVRBigEndian, cmd: ['dcmconv', '+tb'] },
  DeflatedExplicitVRLittleEndian: { ts: TS.DeflatedExplicitVRLittleEndian, cmd: ['dcmconv', '+td'] },
  JPEGBaseline: { ts: TS.JPEGBaseline, cmd: ['dcmcjpeg', '+eb'], eightBit: true },
  JPEGExtended: { ts: TS.JPEGExtended, cmd: ['dcmcjpeg', '+ee'] },
  JPEGLossless: { ts: TS.JPEGLossless, cmd: ['dcmcjpeg', '+el'] },
  JPEGLosslessSV1: { ts: TS.JPEGLosslessSV1, cmd: ['dcmcjpeg', '+e1'] },
  JPEGLSLossless: { ts: TS.JPEGLSLossless, cmd: ['dcmcjpls', '+el'] },
  JPEGLSNearLossless: { ts: TS.JPEGLSNearLossless, cmd: ['dcmcjpls', '+en'] },
  RLELossless: { ts: TS.RLELossless, cmd: ['dcmcrle'] },
};

/** The transfer syntax UIDs makeVariants produces (the keys of its result). */
export const VARIANT_TRANSFER_SYNTAXES: readonly string[] = Object.values(RECIPES).map((r) => r.ts);

/** (0002,0010) of a file, as dcmdump reads it. */
export async function transferSyntaxOf(file: string): Promise<string> {
  const { stdout } = await run('dcmdump', ['-M', '-Un', '+P', '0002,0010', file]);
  const m = /\[([0-9.]+)\]/.exec(stdout);
  if (!m) throw new Error(`no (0002,0010) in ${file}: ${stdout}`);
  return m[1]!;
}

/**
 * Returns { <transfer syntax UID>: path } for every variant. `makeVariants(outDir)` first generates a 16-bit
 * input instance there. JPEG baseline needs 8-bit pixels, so its input is an 8-bit generated instance (or
 * opts.eightBitFile); every other variant is made from the input file. Each output's (0002,0010) is checked.
 */
export async function makeVariants(outDir: string): Promise<Record<string, string>>;
export async function makeVariants(inputFile: string, outDir: string, opts?: { eightBitFile?: string }): Promise<Record<string, string>>;
export async function makeVariants(a: string, b?: string, opts: { eightBitFile?: string } = {}): Promise<Record<string, string>> {
  const outDir = b ?? a;
  await mkdir(outDir, { recursive: true });
  let inputFile = a;
  if (b === undefined) {
    inputFile = join(outDir, 'input-16bit.dcm');
    await writeFile(inputFile, generateOne({ rows: 128, cols: 128, prefix: 'VAR' }));
  }
  let eightBit = opts.eightBitFile;
  if (!eightBit) {
    eightBit = join(outDir, 'input-8bit.dcm');
    await writeFile(eightBit, generateOne({ bitsAllocated: 8, rows: 128, cols: 128, prefix: 'VAR' }));
  }
  const out: Record<string, string> = {};
  for (const [name, r] of Object.entries(RECIPES)) {
    const target = join(outDir, `${name}.dcm`);
    const [cmd, ...args] = r.cmd;
    await run(cmd!, [...args, r.eightBit ? eightBit : inputFile, target]);
    const ts = await transferSyntaxOf(target);
    if (ts !== r.ts) throw new Error(`${cmd} ${args.join(' ')} wrote ${ts}, expected ${r.ts}`);
    out[r.ts] = target;
  }
  return out;
}

/** dcmdump's output for a file, decoded as latin1 (our files use ISO_IR 100); never throws on a non-zero exit. */
export async function dcmdump(file: string, args: string[] = []): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run('dcmdump', [...args, file], { maxBuffer: 64 * 1024 * 1024, encoding: 'latin1' });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}
