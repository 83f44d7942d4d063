// Sends arbitrary data set bytes over C-STORE (the project's own SCU streams a file as is), for malformed inputs
// DCMTK's storescu would refuse to send.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { storeInstance, type StoreOutcome } from '../../src/scu/store.js';
import { TS } from '../../src/dicom/transfer-syntax.js';

export interface RawStore {
  port: number;
  calledAet?: string;
  callingAet?: string;
  sopClassUid?: string;
  sopInstanceUid: string;
  transferSyntaxUid?: string;
  timeoutMs?: number;
}

export async function sendRawDataset(bytes: Buffer, o: RawStore): Promise<StoreOutcome> {
  const dir = mkdtempSync(path.join(tmpdir(), 'dphiant-raw-'));
  const file = path.join(dir, 'ds');
  writeFileSync(file, bytes);
  try {
    return await storeInstance(
      { host: '127.0.0.1', port: o.port, aet: o.calledAet ?? 'DPHIANT', callingAet: o.callingAet ?? 'MODALITY', connectTimeoutMs: 5000, noProgressTimeoutMs: o.timeoutMs ?? 30_000, storeTimeoutMs: o.timeoutMs ?? 30_000 },
      {
        sopClassUid: o.sopClassUid ?? '1.2.840.10008.5.1.4.1.1.7',
        sopInstanceUid: o.sopInstanceUid,
        transferSyntaxUid: o.transferSyntaxUid ?? TS.ExplicitVRLittleEndian,
        callingAet: '',
        spoolPath: file,
        bytes: bytes.length,
      },
      // one association, as a modality sends: the test sees what the middleman answered to it
      { retry: false },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
