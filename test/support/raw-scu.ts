// Sends arbitrary data set bytes over C-STORE (the project's own SCU streams a file as is), for malformed inputs
// DCMTK's storescu would refuse to send; and raw PDUs for what no SCU sends at all.
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

/** A PDU: type, reserved byte, 4-byte length, body (PS3.8 9.3). */
export function pdu(type: number, body: Buffer): Buffer {
  const h = Buffer.alloc(6);
  h[0] = type;
  h.writeUInt32BE(body.length, 2);
  return Buffer.concat([h, body]);
}

/** An A-ASSOCIATE-RQ (PS3.8 9.3.2) proposing Verification with implicit VR LE. */
export function associateRq(called: string, calling: string): Buffer {
  const ae = (s: string) => Buffer.from(s.padEnd(16, ' '), 'latin1');
  const item = (type: number, body: Buffer) => {
    const h = Buffer.alloc(4);
    h[0] = type;
    h.writeUInt16BE(body.length, 2);
    return Buffer.concat([h, body]);
  };
  const maxLength = Buffer.alloc(4);
  maxLength.writeUInt32BE(16384);
  return pdu(
    0x01,
    Buffer.concat([
      Buffer.from([0x00, 0x01, 0x00, 0x00]), // protocol version 1, reserved
      ae(called),
      ae(calling),
      Buffer.alloc(32),
      item(0x10, Buffer.from('1.2.840.10008.3.1.1.1')),
      item(0x20, Buffer.concat([Buffer.from([1, 0, 0, 0]), item(0x30, Buffer.from('1.2.840.10008.1.1')), item(0x40, Buffer.from('1.2.840.10008.1.2'))])),
      item(0x50, Buffer.concat([item(0x51, maxLength), item(0x52, Buffer.from('1.2.826.0.1.3680043.10.1')), item(0x55, Buffer.from('FAULT_TEST'))])),
    ]),
  );
}
